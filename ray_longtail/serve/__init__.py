"""Online serving with Ray Serve: `app.build_app` (Encoder + Recommender deployments behind a FastAPI ingress),
`launch.serve_forever` for `ray-longtail serve`, request/response models in `schemas`.

Importing this package does not import Ray Serve; import `ray_longtail.serve.app` for that."""
