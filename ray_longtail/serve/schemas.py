"""Request and response models of the HTTP API (FastAPI validates requests against them; OpenAPI at /docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

MAX_K = 100
MAX_ITEMS_PER_REQUEST = 1000  # POST /items, recent_items
MAX_BODY_BYTES = 1_000_000  # any request body over 1 MB -> 413
MAX_TEXT_CHARS = 2_000  # a query or a similar-to text
ID_CHARS = 256
MAX_UNIX_SECONDS = 2**40  # year ~36,800: beyond that a timestamp is not seconds
# at least one non-space character; an explicit class, so that JSON Schema (ECMA), Python and pydantic's
# regex engine agree on which strings match (their \s differ on control characters)
NON_BLANK = r"[^ \t\n\r\x0b\x0c]"



def _number_not_text(value):
    if isinstance(value, (str, bool)):
        raise ValueError("Input should be a valid integer")
    return value


# a JSON integer, as JSON Schema means it: 3 and 3.0 are, "3", true and 3.5 are not
Integer = Annotated[int, Strict(False), BeforeValidator(_number_not_text)]


def bounded_integer(ge: int, le: int):
    """`Integer` within [ge, le]; the bounds sit before the validator so the schema shows them (an optional field's
    Field(ge=..) on `Integer | None` would reach the JSON Schema as unknown keywords)."""
    return Annotated[int, Field(ge=ge, le=le), Strict(False), BeforeValidator(_number_not_text)]

K = Field(10, ge=1, le=MAX_K, description=f"number of items to return (1..{MAX_K})")


class StrictModel(BaseModel):
    # a misspelt field is a 422, not silently ignored; strict: "5" is not an integer, 0 not a boolean (as in the schema)
    model_config = ConfigDict(extra="forbid", strict=True)


class RecentItem(StrictModel):
    item_id: str = Field(..., max_length=ID_CHARS)
    timestamp: Integer = Field(..., ge=0, le=MAX_UNIX_SECONDS, description="unix seconds of the interaction")


class RecommendRequest(StrictModel):
    user_id: str | None = Field(None, min_length=1, max_length=ID_CHARS,
                                description="user id as in the interactions; unknown or absent -> cold start")
    k: Integer = Field(10, ge=1, le=MAX_K, description=f"number of items (1..{MAX_K}); the re-ranker sees the top "
                                                     "`rerank_depth` candidates (GET /metadata), so at most that many "
                                                     "come back")
    exclude_seen: bool = Field(True, description="never recommend the user's history items")
    tail_weight: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False,
                                      description="0 = pure relevance, 1 = maximal tail preference; "
                                                  "default: the run's selected tail_weight")
    recent_items: list[Annotated[str, Field(max_length=ID_CHARS)] | RecentItem] | None = Field(
        None, max_length=MAX_ITEMS_PER_REQUEST,
        description="what the user interacted with recently, used when the user is unknown: item ids (at the end "
                    "of the run's history) or {item_id, timestamp} (unknown ids are ignored; a repeated id is a "
                    "repeated interaction)")

    def recent(self) -> tuple[list[str] | None, list[int | None] | None]:
        """(item ids, their unix times or None = the history's end; None when no item has a time)."""
        if self.recent_items is None:
            return None, None
        ids = [r if isinstance(r, str) else r.item_id for r in self.recent_items]
        times = [None if isinstance(r, str) else r.timestamp for r in self.recent_items]
        return ids, (None if all(t is None for t in times) else times)


class SimilarToItem(StrictModel):
    item_id: str = Field(..., min_length=1, max_length=ID_CHARS, description="a catalog or added item")
    k: Integer = K
    tail_only: bool = Field(False, description="only tail (non-head) items")


class SimilarToText(StrictModel):
    text: str = Field(..., max_length=MAX_TEXT_CHARS, pattern=NON_BLANK,
                      description="free text (embedded with the run's encoder)")
    k: Integer = K
    tail_only: bool = Field(False, description="only tail (non-head) items")


SimilarRequest = SimilarToItem | SimilarToText  # exactly one of item_id and text (each model forbids the other)


class SearchRequest(StrictModel):
    query: str = Field(..., max_length=MAX_TEXT_CHARS, pattern=NON_BLANK, description="free-text query")
    k: Integer = K
    tail_only: bool = False


class NewItem(StrictModel):
    item_id: str = Field(..., min_length=1, max_length=ID_CHARS)
    title: str = Field(..., max_length=1_000)
    description: str | None = Field(None, max_length=20_000)
    category: str | None = Field(None, max_length=1_000)
    brand: str | None = Field(None, max_length=1_000)
    price: float | None = Field(None, allow_inf_nan=False)


class AddItemsRequest(StrictModel):
    items: list[NewItem] = Field(..., min_length=1, max_length=MAX_ITEMS_PER_REQUEST,
                                 description=f"items to add or update (at most {MAX_ITEMS_PER_REQUEST})")


class Event(StrictModel):
    user_id: str = Field(..., min_length=1, max_length=ID_CHARS)
    item_id: str = Field(..., min_length=1, max_length=ID_CHARS)
    event: Literal["impression", "click", "add_to_cart", "purchase"]
    ts: bounded_integer(0, MAX_UNIX_SECONDS) | None = Field(
        None, description="unix seconds; default: when received")
    request_id: str | None = Field(None, max_length=64, description="the request_id of the /recommend answer shown")
    variant: str | None = Field(None, max_length=64)
    position: bounded_integer(0, MAX_K) | None = Field(
        None, description="0-based rank in the list shown")


class EventsRequest(StrictModel):
    events: list[Event] = Field(..., min_length=1, max_length=MAX_ITEMS_PER_REQUEST,
                                description=f"1..{MAX_ITEMS_PER_REQUEST} events, written together or not at all")


class EventsResponse(BaseModel):
    accepted: int
    segment: str = Field(description="the events segment written (under <run>/events/)")


class Item(BaseModel):
    item_id: str
    title: str
    score: float
    segment: str = Field(description="head | tail | cold")
    source: str = Field(description="retrieval source that ranked the item best (content for /similar, /search)")
    reason: str


class RecommendResponse(BaseModel):
    request_id: str = Field(description="unique per answer: log its impressions and clicks with it (POST /events)")
    variant: str = Field(description="the A/B variant that answered (sticky per user_id); log it with the events")
    user_id: str | None
    cold_start: bool = Field(description="true when the user is unknown and no known recent_items were given")
    tail_weight: float
    items: list[Item]


class ItemsResponse(BaseModel):
    items: list[Item]


class AddItemsResponse(BaseModel):
    added: int
    total_added: int = Field(description="items added to this run at serving time so far")


class UserSummary(BaseModel):
    user_id: str
    interactions: int = Field(description="distinct items in the user's history")


class UsersResponse(BaseModel):
    users: list[UserSummary]


class HistoryResponse(BaseModel):
    user_id: str
    interactions: int
    items: list[Item] = Field(description="most recent first; score = interactions with the item")


class Cluster(BaseModel):
    cluster: int
    label: str = Field(description="the terms that set the cluster apart")
    size: int
    tail_share: float
    items: list[Item] = Field(description="its most popular non-head items")


class ClustersResponse(BaseModel):
    clusters: list[Cluster]


class Health(BaseModel):
    status: str
    run_id: str


class VariantInfo(BaseModel):
    name: str
    share: float = Field(description="share of users assigned to it (shares sum to 1)")
    run: str
    tail_weight: float | None = Field(description="null = the run's selected tail_weight")
    rerank_method: str | None = Field(description="null = the run's rerank.method")


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
    query_encoder: Literal["replica", "deployment"] = Field(
        description="who embeds the one text of /search and /similar: each Recommender replica (CPU) or the Encoder")
    events_store: str = Field(description="where POST /events writes")
    variants: list[VariantInfo]
    max_k: int = MAX_K
    max_items_per_request: int = MAX_ITEMS_PER_REQUEST
    max_body_bytes: int = MAX_BODY_BYTES


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the app (FastAPI's validation errors included) has exactly this shape."""

    detail: str = Field(description="what was wrong and, where it helps, how to fix it")
