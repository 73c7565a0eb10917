"""Column names of every table the pipeline reads or writes; other modules import them from here."""

# items (catalog)
ITEM_ID = "item_id"
TITLE = "title"
DESCRIPTION = "description"
CATEGORY = "category"
BRAND = "brand"
PRICE = "price"
TEXT_COLUMNS = (TITLE, DESCRIPTION, CATEGORY, BRAND)
ITEM_REQUIRED = (ITEM_ID, TITLE)

# interactions
USER_ID = "user_id"
TIMESTAMP = "timestamp"
EVENT = "event"
VALUE = "value"
INTERACTION_REQUIRED = (USER_ID, ITEM_ID, TIMESTAMP)
PURCHASE = "purchase"

# derived
VECTOR = "vector"
TEXT = "text"
POPULARITY = "popularity"
SEGMENT = "segment"
CLUSTER = "cluster"
HEAD, TAIL, COLD = "head", "tail", "cold"
SOURCE = "source"
SCORE = "score"
RANK = "rank"
LABEL = "label"
QID = "qid"
FIRST_SEEN = "first_seen_ts"
