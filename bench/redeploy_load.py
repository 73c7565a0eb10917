"""POST /recommend in a loop until GET /metadata shows run `target`, then 5 s more; prints answered and failed
requests and when the new run answered. Used by bench/online_loop.sh around a redeploy.

    python bench/redeploy_load.py http://127.0.0.1:8123 <new run id> <a known user id>
"""

import sys
import time

import httpx


def main(url: str, target: str, user: str, limit_s: float = 300.0) -> None:
    answered, failed, errors, switched, start = 0, 0, [], None, time.time()
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.time() - start < limit_s and not (switched and time.time() - switched > 5):
            try:
                status = client.post("/recommend", json={"user_id": user, "k": 10}).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            answered, failed = (answered + 1, failed) if status == 200 else (answered, failed + 1)
            if status != 200:
                errors.append(status)
            if switched is None and client.get("/metadata").json()["run_id"] == target:
                switched = time.time()
    after = f"{switched - start:.1f} s" if switched else "never"
    print(f"answered {answered} failed {failed} errors {errors[:5]}; the new run answered after {after}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
