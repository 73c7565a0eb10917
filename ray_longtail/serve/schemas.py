"""Request and response models of the HTTP API (FastAPI validates requests against them; OpenAPI at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_K = 100
MAX_ITEMS_PER_REQUEST = 1000  # POST /items: more -> 413
MAX_BODY_BYTES = 1_000_000  # any request body over 1 MB -> 413
MAX_TEXT_CHARS = 2_000  # a query or a similar-to text
ID_CHARS = 256

K = Field(10, ge=1, le=MAX_K, description=f"number of items to return (1..{MAX_K})")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


class RecommendRequest(StrictModel):
    user_id: str | None = Field(None, min_length=1, max_length=ID_CHARS,
                                description="user id as in the interactions; unknown or absent -> cold start")
    k: int = Field(10, ge=1, le=MAX_K, description=f"number of items (1..{MAX_K}); the re-ranker sees the top "
                                                     "`rerank_depth` candidates (GET /metadata), so at most that many "
                                                     "come back")
    exclude_seen: bool = Field(True, description="never recommend the user's history items")
    tail_weight: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                      description="0 = pure relevance, 1 = maximal tail preference; "
                                                  "default: the run's selected tail_weight")
    recent_items: list[str] | None = Field(None, max_length=MAX_ITEMS_PER_REQUEST,
                                           description="item ids the user interacted with recently; used when the "
                                                       "user is unknown (unknown ids are ignored; a repeated id "
                                                       "is a repeated interaction)")
    recent_timestamps: list[int] | None = Field(None, max_length=MAX_ITEMS_PER_REQUEST,
                                                description="unix seconds of each recent item (same length as "
                                                            "recent_items); default: all recent")

    @model_validator(mode="after")
    def timestamps_match(self) -> RecommendRequest:
        if self.recent_timestamps is not None and len(self.recent_timestamps) != len(self.recent_items or []):
            raise ValueError("recent_timestamps must give one time per recent item")
        return self


class SimilarRequest(StrictModel):
    item_id: str | None = Field(None, min_length=1, max_length=ID_CHARS, description="a catalog or added item")
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="free text (embedded by the Encoder)")
    k: int = K
    tail_only: bool = Field(False, description="only tail (non-head) items")

    @model_validator(mode="after")
    def one_of(self) -> SimilarRequest:
        if (self.item_id is None) == (self.text is None):
            raise ValueError("give exactly one of item_id and text")
        if self.text is not None and not self.text.strip():
            raise ValueError("text must not be empty")
        return self


class SearchRequest(StrictModel):
    query: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="free-text query")
    k: int = K
    tail_only: bool = False

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty")
        return value


class NewItem(StrictModel):
    item_id: str = Field(..., min_length=1, max_length=ID_CHARS)
    title: str = Field(..., max_length=1_000)
    description: str | None = Field(None, max_length=20_000)
    category: str | None = Field(None, max_length=1_000)
    brand: str | None = Field(None, max_length=1_000)
    price: float | None = Field(None, allow_inf_nan=False)


class AddItemsRequest(StrictModel):
    items: list[NewItem] = Field(..., min_length=1,
                                 description=f"items to add or update (at most {MAX_ITEMS_PER_REQUEST}, else 413)")


class Item(BaseModel):
    item_id: str
    title: str
    score: float
    segment: str = Field(description="head | tail | cold")
    source: str = Field(description="retrieval source that ranked the item best (content for /similar, /search)")
    reason: str


class RecommendResponse(BaseModel):
    user_id: str | None
    cold_start: bool = Field(description="true when the user is unknown and no known recent_items were given")
    tail_weight: float
    items: list[Item]


class ItemsResponse(BaseModel):
    items: list[Item]


class AddItemsResponse(BaseModel):
    added: int
    total_added: int = Field(description="items added to this run at serving time so far")


class Health(BaseModel):
    status: str
    run_id: str


class Metadata(BaseModel):
    run_id: str
    run: str
    model: str
    max_length: int
    catalog: int
    added_items: int
    segments: dict[str, int]
    users: int
    default_tail_weight: float
    ranker: str
    precomputed_users: int = Field(description="known users answered from the batch job's serving lists")
    rerank_depth: int
    max_k: int = MAX_K
    max_items_per_request: int = MAX_ITEMS_PER_REQUEST
    max_body_bytes: int = MAX_BODY_BYTES


class ErrorResponse(BaseModel):
    detail: str | list
