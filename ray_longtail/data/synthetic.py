"""Seeded generator of realistic long-tail e-commerce shops at any size (catalog + interactions).

The output follows the data contract of `ray_longtail.data.schema`:

* items: item_id, title, description, category (" > "-joined hierarchy), brand, price, first_seen_ts
* interactions: user_id, item_id, timestamp (int64 unix seconds), event, value

What makes it useful as a long-tail benchmark:

* Item popularity is Zipf-like (heavy head, long tail); a share of the catalog is never interacted with (cold), and
  some items are added late in the time span (first_seen_ts near the end). Every interaction happens at or after its
  item's first_seen_ts.
* Titles and descriptions are built from per-category vocabularies (nouns, materials/ingredients, styles, uses,
  features) plus shared adjectives, colours and generic filler, so items of one category share words.
* Each user has 1-3 preferred leaf categories and one preferred attribute word (a material/ingredient or a style).
  Besides popularity-driven choices, users pick items of their categories whose title carries their attribute word,
  including uniformly chosen tail items and, sometimes, items of other categories: content similarity predicts tail
  purchases. User activity is heavy-tailed (many single-interaction users, a few with hundreds).
* Time runs over `days` days ending at a fixed epoch (2024-01-01 UTC), so the output depends on the seed only; users
  have their own active periods and sometimes buy the same item again.

Profiles (`PROFILES`, `generate_shop(profile=...)`) name kinds of data; every knob is a general mechanism, so that
a pipeline meeting its quality bar on both meets it on data, not on one generator's quirks:

* "retail" (the default, unchanged output for a seed): purchases over one year, flat string columns as above.
* "magazines": an Amazon-style ratings catalogue. 1-5 stars skewed high, 85% of users with exactly one rating and
  a heavy tail of active raters, 17 years at day resolution with activity growing over time, 2,500 items and about
  90,000 ratings by default. Items carry list-valued columns like Amazon metadata dumps: category as a hierarchy
  ["Magazine Subscriptions", group, ..., genre], description as a list of paragraphs (a few hundred words, from
  per-genre vocabularies), also_buy / also_view as lists of item ids (possibly empty); price is sometimes missing.
  Users have genre and topic tastes as in retail, so the text predicts who rates an item.

Everything is vectorised with numpy/pyarrow (loops only over a few modes and rejection rounds): 10^6 items with
10^7 interactions take about 30 s and 3 GB peak RSS (retail).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ray_longtail.data import schema as S
from ray_longtail.errors import UserError

__all__ = ["ALSO_BUY", "ALSO_VIEW", "END_TS", "EVENTS", "LIST_COLUMNS", "PROFILES", "MagazineCatalog", "Profile",
           "generate_shop", "get_profile", "write_shop"]

END_TS = 1704067200  # 2024-01-01 00:00:00 UTC: the end of the generated time span
DAY = 86400
EVENTS = ("purchase", "rating")
RATING = "rating"

# ------------------------------------------------------------------------------------------------------------------
# Vocabularies
# ------------------------------------------------------------------------------------------------------------------

GENERAL_STYLES = ("minimalist", "vintage", "Scandinavian", "rustic", "modern", "bohemian", "industrial", "classic",
                  "retro", "Japandi", "coastal", "mid-century", "art deco", "farmhouse", "urban")
CARE_STYLES = ("organic", "vegan", "botanical", "fair trade", "award-winning", "small-batch")
COLOURS = ("black", "white", "ivory", "charcoal", "grey", "navy", "sage green", "olive", "forest green", "rust",
           "mustard", "blush pink", "burgundy", "sky blue", "teal", "sand", "caramel", "natural", "cream", "lilac")
LIQUID_SIZES = ("30 ml", "50 ml", "100 ml", "200 ml", "500 ml", "travel size", "pack of 2", "gift set")
FOOD_SIZES = ("100 g", "250 g", "500 g", "1 kg", "pack of 3", "pack of 6", "gift tin")
ADJECTIVES = ("premium", "handmade", "compact", "lightweight", "durable", "eco-friendly", "everyday", "deluxe",
              "essential", "heavy-duty", "portable", "elegant", "soft", "sturdy", "versatile", "artisan", "signature",
              "timeless", "refined", "practical")
FILLER = (
    "Ships in plastic-free, recyclable packaging.",
    "Backed by our two-year no-quibble warranty.",
    "Colours may vary slightly from the photographs.",
    "Designed in-house and tested by our product team.",
    "Makes a thoughtful gift for friends and family.",
    "Free returns within 30 days of delivery.",
    "Each piece is individually inspected before dispatch.",
    "Customers love the attention to detail.",
    "Please check the dimensions before ordering.",
    "Part of our best-selling everyday range.",
    "Sourced from suppliers that meet our ethical trading standards.",
    "Pairs beautifully with other pieces in the collection.",
    "Limited stock available this season.",
    "Care instructions are included in the box.",
    "Built to last and easy to look after.",
    "Order before 2pm for next-day delivery.",
    "Carbon-neutral shipping on every order.",
    "Our customer service team is happy to help with any questions.",
    "Available while stocks last.",
    "Gift wrapping is available at checkout.",
    "Suitable for everyday use.",
    "A small treat for yourself or a lovely surprise for someone else.",
    "Bundle with matching items and save.",
    "Rated highly by thousands of happy customers.",
    "Small variations are part of its charm.",
    "We plant a tree for every order placed.",
    "Made in small batches by independent makers.",
    "Our bestseller, now back in stock.",
)
CONSUMABLE_DEPARTMENTS = ("Food & Drink", "Beauty > Skincare", "Beauty > Bath & Body")
BRAND_HEADS = ("Nord", "Vel", "Aster", "Brook", "Lum", "Kin", "Mar", "Ode", "Hal", "Sol", "Tor", "Wren", "Fen", "Ivo",
               "Cal", "Del", "Ember", "Fjor", "Gil", "Hearth", "Isla", "Juni", "Kal", "Lark", "Mos", "Nim", "Ori",
               "Pel", "Quill", "Rho", "Saffi", "Tam", "Ula", "Vey", "Wyn", "Yar", "Zen", "Bram", "Cor", "Dun")
BRAND_TAILS = ("vik", "ora", "wood", "stone", "ly", "mere", "field", "berg", "la", "ton", "wick", "haven", "dale",
               "sen", "ark", "ino", "worth", "by", "ford", "ette", "ix", "holm", "ara", "lo", "ure", "ley", "ova",
               "crest", "well", "man")
BRAND_SUFFIXES = ("", " & Co", " Home", " Studio", " Goods", " Supply", " Living", " Works", " Lab")


@dataclass(frozen=True)
class Leaf:
    """One leaf category: its path and the words its items are made of."""

    path: str
    price: float
    context: str
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    uses: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def consumable(self) -> bool:
        """Food and care products: ingredients instead of materials, claims instead of styles, sizes instead of
        colours."""
        return self.path.startswith(CONSUMABLE_DEPARTMENTS)

    @property
    def styles(self) -> tuple[str, ...]:
        return CARE_STYLES if self.consumable else GENERAL_STYLES

    @property
    def variants(self) -> tuple[str, ...]:
        if not self.consumable:
            return COLOURS
        return FOOD_SIZES if self.path.startswith("Food") else LIQUID_SIZES


LEAVES = (
    Leaf("Home > Kitchen > Cookware", 45, "kitchen",
         ("frying pan", "saucepan", "casserole dish", "stock pot", "wok", "griddle pan", "roasting tin",
          "dutch oven", "milk pan"),
         ("stainless steel", "cast iron", "copper", "aluminium", "ceramic"),
         ("Perfect for searing, sauteing and slow-cooking family meals.",
          "Works on gas, electric and induction hobs.",
          "Goes straight from the hob to the oven to the table."),
         ("The riveted handle stays cool while you cook.",
          "A non-stick coating means easy release and quick clean-up.",
          "Oven safe up to 220 degrees.")),
    Leaf("Home > Kitchen > Tableware", 25, "dining room",
         ("dinner plate", "side plate", "pasta bowl", "serving platter", "mug", "teacup", "salad bowl", "jug",
          "espresso cup"),
         ("ceramic", "porcelain", "stoneware", "glass", "bamboo", "marble"),
         ("Ideal for everyday dining and relaxed entertaining.",
          "Stacks neatly to save cupboard space.",
          "Designed to make weeknight dinners feel special."),
         ("Dishwasher and microwave safe.",
          "Each piece is hand-glazed, so no two are exactly alike.",
          "Chip-resistant rims for everyday durability.")),
    Leaf("Home > Kitchen > Kitchen Utensils", 15, "kitchen",
         ("spatula", "chopping board", "wooden spoon", "whisk", "ladle", "tongs", "knife block", "pepper mill",
          "colander"),
         ("bamboo", "acacia", "silicone", "stainless steel", "oak", "walnut"),
         ("A dependable helper for everyday cooking and baking.",
          "Hang it by the hob so it is always within reach.",
          "Gentle on non-stick pans and tough on stubborn sauces."),
         ("Heat resistant and easy to clean.",
          "Finished with food-safe oil for a natural sheen.",
          "An ergonomic grip reduces strain during long prep sessions.")),
    Leaf("Home > Bedding > Bed Linen", 60, "bedroom",
         ("duvet cover", "pillowcase", "fitted sheet", "flat sheet", "bedspread", "pillow sham", "bedding set"),
         ("cotton", "linen", "silk", "velvet", "bamboo"),
         ("Breathable and soft for a restful night's sleep.",
          "Layer it up for a cosy, lived-in bedroom.",
          "Gets softer with every wash."),
         ("A hidden button closure keeps the duvet in place.",
          "Pre-washed for a relaxed, lived-in texture.",
          "Available in single, double, king and super king sizes.")),
    Leaf("Home > Bedding > Pillows & Duvets", 55, "bedroom",
         ("pillow", "duvet", "mattress topper", "memory foam pillow", "body pillow", "weighted blanket"),
         ("wool", "cotton", "silk", "bamboo", "recycled polyester"),
         ("Keeps you cool in summer and warm in winter.",
          "Supports your neck and shoulders through the night.",
          "A simple upgrade for a better night's sleep."),
         ("Hypoallergenic filling suitable for allergy sufferers.",
          "Machine washable at 40 degrees.",
          "Box-stitched channels stop the filling from shifting.")),
    Leaf("Home > Decor > Lighting", 70, "living room",
         ("table lamp", "floor lamp", "pendant light", "lamp shade", "wall sconce", "desk lamp", "string lights",
          "lantern"),
         ("brass", "rattan", "glass", "ceramic", "linen", "oak", "marble"),
         ("Creates a warm, inviting glow in the evening.",
          "Brightens a reading corner or a home office.",
          "Adds a statement piece to any room."),
         ("Compatible with dimmable LED bulbs.",
          "Supplied with a braided fabric cable.",
          "Easy to assemble with no tools required.")),
    Leaf("Home > Decor > Cushions & Throws", 35, "living room",
         ("cushion cover", "throw blanket", "bolster cushion", "floor cushion", "knitted throw", "pouffe"),
         ("velvet", "linen", "wool", "cotton", "jute", "cashmere"),
         ("Instantly refreshes a sofa, armchair or bed.",
          "Wrap up on chilly evenings in front of the fire.",
          "Mix and match textures for a layered look."),
         ("A concealed zip makes the cover easy to remove.",
          "Feather-filled inner included.",
          "Finished with hand-knotted tassels.")),
    Leaf("Home > Decor > Candles & Fragrance", 22, "home",
         ("scented candle", "reed diffuser", "pillar candle", "tealight set", "room spray", "wax melt set",
          "candle holder"),
         ("soy wax", "beeswax", "glass", "ceramic", "brass"),
         ("Fills the room with a calming, long-lasting scent.",
          "Sets the mood for a slow Sunday at home.",
          "Notes of fig, cedar and amber linger for hours."),
         ("A cotton wick gives a clean, even burn.",
          "Burns for up to fifty hours.",
          "The vessel can be reused once the candle has burned down.")),
    Leaf("Home > Bath > Towels & Bath Mats", 30, "bathroom",
         ("bath towel", "hand towel", "bath sheet", "bath mat", "bathrobe", "towel bale"),
         ("cotton", "linen", "bamboo", "cork"),
         ("Turns your bathroom into a spa-like retreat.",
          "Thick, absorbent and quick to dry.",
          "A soft touch after a long hot bath."),
         ("Heavyweight loops for extra absorbency.",
          "Non-slip backing keeps it firmly in place.",
          "Colourfast and machine washable.")),
    Leaf("Garden > Outdoor Living > Planters", 35, "garden",
         ("plant pot", "hanging planter", "window box", "raised bed", "plant stand", "trough planter"),
         ("terracotta", "ceramic", "rattan", "stoneware", "concrete", "galvanised steel"),
         ("Gives herbs, succulents and house plants a stylish home.",
          "Suitable for indoor and outdoor use.",
          "Brings life to balconies, patios and windowsills."),
         ("Drainage holes prevent waterlogging.",
          "Frost resistant for year-round use.",
          "A removable saucer catches excess water.")),
    Leaf("Garden > Tools > Hand Tools", 25, "garden",
         ("trowel", "pruning shears", "hand fork", "garden kneeler", "watering can", "hori hori knife",
          "garden gloves"),
         ("stainless steel", "leather", "galvanised steel", "copper", "canvas"),
         ("Makes planting, weeding and potting easy work.",
          "A favourite of keen gardeners and allotment growers.",
          "Tackles everything from bulbs to borders."),
         ("A rust-resistant blade stays sharp season after season.",
          "The comfortable grip reduces hand fatigue.",
          "Comes with a lifetime guarantee.")),
    Leaf("Garden > Outdoor Living > Garden Furniture", 180, "patio",
         ("bistro set", "garden bench", "sun lounger", "hammock", "outdoor rug", "parasol", "deck chair"),
         ("acacia", "rattan", "aluminium", "teak", "canvas"),
         ("Made for long summer evenings outdoors.",
          "Turns a small balcony into an outdoor living room.",
          "Relax in the sun or entertain friends in style."),
         ("Weather resistant and UV protected.",
          "Folds flat for easy winter storage.",
          "Cushions are shower-proof and removable.")),
    Leaf("Fashion > Women > Dresses", 65, "wardrobe",
         ("midi dress", "wrap dress", "maxi dress", "shirt dress", "slip dress", "tea dress", "sundress"),
         ("cotton", "linen", "silk", "denim", "velvet", "recycled polyester"),
         ("Dress it up with heels or down with trainers.",
          "An easy-to-wear piece for work, weekends and weddings.",
          "Flatters every figure with a relaxed silhouette."),
         ("Features handy side pockets.",
          "Fully lined with an invisible back zip.",
          "The model is 5 ft 9 and wears a size 10.")),
    Leaf("Fashion > Women > Knitwear", 70, "wardrobe",
         ("jumper", "cardigan", "roll-neck jumper", "knitted vest", "sweater dress", "chunky knit"),
         ("wool", "cashmere", "cotton", "merino", "alpaca"),
         ("A cosy layer for cold mornings and crisp walks.",
          "Wear it over a shirt or on its own.",
          "Knitted to last for many winters."),
         ("Ribbed cuffs and hem hold their shape.",
          "Hand wash cold and dry flat.",
          "A relaxed fit with dropped shoulders.")),
    Leaf("Fashion > Men > Shirts", 45, "wardrobe",
         ("oxford shirt", "flannel shirt", "overshirt", "polo shirt", "grandad shirt", "short-sleeve shirt",
          "button-down shirt"),
         ("cotton", "linen", "denim", "corduroy"),
         ("Smart enough for the office, relaxed enough for the weekend.",
          "A wardrobe staple that goes with everything.",
          "Layer it under a jumper or wear it open over a tee."),
         ("Cut for a regular fit.",
          "Finished with mother-of-pearl buttons.",
          "Garment dyed for a lived-in feel.")),
    Leaf("Fashion > Men > Outerwear", 140, "wardrobe",
         ("parka", "rain jacket", "quilted jacket", "bomber jacket", "trench coat", "gilet", "overcoat"),
         ("wool", "nylon", "recycled polyester", "corduroy", "leather", "denim"),
         ("Keeps out wind and rain on the daily commute.",
          "A dependable layer from autumn through spring.",
          "Built for city streets and country walks alike."),
         ("Taped seams and a water-repellent finish.",
          "Plenty of pockets, including a hidden inner one.",
          "An adjustable hood packs away into the collar.")),
    Leaf("Fashion > Accessories > Bags", 60, "everyday carry",
         ("tote bag", "backpack", "crossbody bag", "weekender bag", "clutch", "bum bag", "laptop bag", "shopper"),
         ("leather", "canvas", "nylon", "jute", "recycled polyester", "cork"),
         ("Big enough for a laptop, a water bottle and the rest of your day.",
          "Carry it to work, to the gym or on a weekend away.",
          "Light on the shoulder and easy to organise."),
         ("A padded sleeve fits most 15-inch laptops.",
          "Adjustable strap with solid metal hardware.",
          "A zipped inner pocket keeps valuables safe.")),
    Leaf("Fashion > Accessories > Jewellery", 40, "jewellery box",
         ("pendant necklace", "hoop earrings", "stud earrings", "signet ring", "charm bracelet", "cuff bangle",
          "anklet"),
         ("sterling silver", "gold vermeil", "brass", "titanium", "freshwater pearl"),
         ("Delicate enough to wear every day and layer with other pieces.",
          "A timeless keepsake for birthdays and anniversaries.",
          "Adds a subtle shine to any outfit."),
         ("Hypoallergenic and nickel free.",
          "Arrives in a recycled gift box.",
          "Can be engraved with initials.")),
    Leaf("Fashion > Shoes > Trainers", 80, "wardrobe",
         ("trainers", "running shoes", "high-top trainers", "slip-on trainers", "plimsolls", "walking shoes"),
         ("leather", "canvas", "mesh", "suede", "rubber"),
         ("Comfortable from the first wear.",
          "Made for city miles and weekend adventures.",
          "A clean silhouette that goes with jeans or joggers."),
         ("A cushioned insole supports every step.",
          "The grippy outsole handles wet pavements.",
          "Runs true to size.")),
    Leaf("Electronics > Audio > Headphones & Speakers", 90, "daily commute",
         ("wireless headphones", "earbuds", "over-ear headphones", "sports earphones", "noise-cancelling headphones",
          "bluetooth speaker", "portable speaker"),
         ("aluminium", "silicone", "polycarbonate", "leather", "walnut", "mesh"),
         ("Rich, detailed sound for music, podcasts and calls.",
          "Block out the world on trains, planes and open offices.",
          "Take your music from the kitchen to the park."),
         ("Up to thirty hours of battery life on a single charge.",
          "Bluetooth 5.3 with multipoint pairing.",
          "USB-C fast charging gives five hours of playback in ten minutes.")),
    Leaf("Electronics > Computing > Keyboards & Mice", 50, "desk",
         ("mechanical keyboard", "wireless mouse", "compact keyboard", "trackpad", "wrist rest", "mouse mat",
          "keycap set"),
         ("aluminium", "polycarbonate", "walnut", "felt", "silicone"),
         ("Makes long days at the desk more comfortable.",
          "Switch between laptop, tablet and desktop at the touch of a button.",
          "A tidy upgrade for any home office."),
         ("Hot-swappable switches and a USB-C connection.",
          "Works with Windows, macOS and Linux.",
          "Rechargeable battery lasts for months.")),
    Leaf("Electronics > Mobile > Phone Cases & Chargers", 20, "everyday carry",
         ("phone case", "wireless charger", "charging cable", "power bank", "phone stand", "screen protector",
          "car mount"),
         ("silicone", "leather", "polycarbonate", "bamboo", "aluminium", "cork"),
         ("Keeps your phone protected and powered all day.",
          "Slim enough to slip into any pocket.",
          "A must-have for travel and long days out."),
         ("Compatible with MagSafe and Qi charging.",
          "Raised edges protect the screen and camera.",
          "Drop tested from two metres.")),
    Leaf("Electronics > Smart Home > Smart Devices", 60, "home",
         ("smart plug", "smart bulb", "video doorbell", "smart thermostat", "motion sensor", "security camera",
          "smart speaker"),
         ("polycarbonate", "aluminium", "glass", "recycled plastic"),
         ("Control your home from anywhere with the free app.",
          "Set schedules and scenes that fit your routine.",
          "Cuts energy bills by switching things off when you are out."),
         ("Works with Alexa, Google Home and Apple Home.",
          "Installs in minutes with no hub required.",
          "End-to-end encryption keeps your data private.")),
    Leaf("Beauty > Skincare > Face Care", 25, "skincare routine",
         ("moisturiser", "face serum", "cleanser", "face mask", "eye cream", "toner", "face oil", "lip balm"),
         ("aloe vera", "shea butter", "hyaluronic acid", "vitamin C", "rosehip oil", "niacinamide"),
         ("Leaves skin soft, hydrated and glowing.",
          "Suitable for all skin types, including sensitive skin.",
          "Use morning and night after cleansing."),
         ("Dermatologically tested and free from parabens.",
          "Packaged in a recyclable glass bottle.",
          "Absorbs quickly without a greasy finish.")),
    Leaf("Beauty > Haircare > Hair Tools", 35, "bathroom",
         ("hair brush", "wide-tooth comb", "hair dryer", "hair straightener", "hair clips", "scrunchie set",
          "curling wand"),
         ("bamboo", "silk", "ceramic", "boar bristle", "titanium"),
         ("Smooths frizz and detangles without pulling.",
          "Salon results from the comfort of home.",
          "Gentle on fine, curly and coloured hair."),
         ("Heats up in thirty seconds.",
          "Anti-static bristles reduce flyaways.",
          "Comes with a travel pouch.")),
    Leaf("Beauty > Bath & Body > Body Care", 15, "bathroom",
         ("body wash", "body lotion", "bath salts", "hand cream", "soap bar", "body scrub", "bath bomb"),
         ("shea butter", "lavender", "eucalyptus", "oat", "coconut", "sea salt"),
         ("Turns bath time into a moment of calm.",
          "Nourishes dry skin and leaves a subtle scent.",
          "Gentle enough for the whole family."),
         ("Made with naturally derived ingredients.",
          "Free from sulphates and microplastics.",
          "Comes in a refillable aluminium bottle.")),
    Leaf("Sports > Fitness > Yoga & Pilates", 30, "home workout",
         ("yoga mat", "yoga block", "resistance band set", "foam roller", "pilates ring", "exercise ball",
          "yoga strap"),
         ("cork", "rubber", "cotton", "jute", "eva foam"),
         ("Supports your practice at home, in the studio or outdoors.",
          "Helps improve balance, flexibility and strength.",
          "Ideal for stretching, pilates and recovery sessions."),
         ("A non-slip surface grips even during hot yoga.",
          "Includes a carry strap.",
          "Free from PVC and latex.")),
    Leaf("Sports > Outdoor > Camping", 55, "camping trip",
         ("tent", "sleeping bag", "camping stove", "head torch", "camping chair", "water bottle", "cool box",
          "enamel mug"),
         ("nylon", "aluminium", "titanium", "stainless steel", "canvas", "recycled polyester"),
         ("Built for weekends in the hills and festival fields.",
          "Light enough to carry all day on the trail.",
          "Everything you need for a night under the stars."),
         ("Packs down small into its own stuff sack.",
          "Waterproof to a 3000 mm hydrostatic head.",
          "Tested in the mountains by our outdoor team.")),
    Leaf("Sports > Cycling > Cycling Accessories", 35, "commute",
         ("bike light set", "bike lock", "cycling helmet", "saddle bag", "bottle cage", "bike pump", "mudguard set",
          "cycling gloves"),
         ("aluminium", "carbon fibre", "nylon", "leather", "polycarbonate", "titanium"),
         ("Makes every commute safer and more comfortable.",
          "Essential kit for road, gravel and city riding.",
          "Fits most bikes in minutes."),
         ("USB rechargeable with a long-lasting battery.",
          "Tested to meet EN safety standards.",
          "Reflective details for visibility after dark.")),
    Leaf("Toys & Games > Games > Board Games & Puzzles", 25, "family games night",
         ("jigsaw puzzle", "board game", "card game", "chess set", "dominoes", "strategy game"),
         ("cardboard", "oak", "walnut", "marble", "bamboo"),
         ("Brings the whole family together around the table.",
          "Easy to learn and hard to put down.",
          "A perfect rainy-day activity for ages eight and up."),
         ("1000 pieces with a poster for reference.",
          "For two to six players.",
          "Games last around forty-five minutes.")),
    Leaf("Toys & Games > Baby & Toddler > Soft Toys", 20, "nursery",
         ("teddy bear", "plush bunny", "baby comforter", "activity cube", "soft rattle", "stacking rings",
          "play mat"),
         ("cotton", "felt", "wool", "silicone", "beech"),
         ("A cuddly companion from the very first day.",
          "Encourages sensory play and early learning.",
          "Makes a lovely new baby gift."),
         ("Safety tested and suitable from birth.",
          "Surface washable with a damp cloth.",
          "Embroidered eyes with no small parts.")),
    Leaf("Stationery > Paper > Notebooks & Journals", 15, "desk",
         ("notebook", "bullet journal", "sketchbook", "weekly planner", "notepad", "recipe book", "travel journal"),
         ("recycled paper", "leather", "linen", "cork"),
         ("Perfect for notes, lists, sketches and big ideas.",
          "Keeps your week organised at a glance.",
          "Slips into a bag for writing on the go."),
         ("Thick 120 gsm paper resists ink bleed.",
          "Lay-flat binding with a ribbon marker.",
          "Dotted, lined and plain pages available.")),
    Leaf("Stationery > Writing > Pens & Pencils", 12, "desk",
         ("fountain pen", "ballpoint pen", "gel pen set", "pencil set", "brush pen set", "rollerball pen",
          "pencil case"),
         ("brass", "aluminium", "resin", "bamboo", "walnut", "recycled plastic"),
         ("Makes every note, letter and list a pleasure to write.",
          "A smooth, reliable writer for the office or the classroom.",
          "Great for journaling, sketching and lettering."),
         ("Refillable with standard ink cartridges.",
          "Quick-drying ink that will not smudge.",
          "Arrives in a presentation box.")),
    Leaf("Pets > Dogs > Dog Beds & Accessories", 40, "home",
         ("dog bed", "dog lead", "dog collar", "chew toy", "dog bowl", "dog harness", "dog coat"),
         ("leather", "nylon", "canvas", "rubber", "ceramic", "recycled polyester"),
         ("Made for happy walks and lazy afternoons.",
          "Tough enough for puppies and gentle on older dogs.",
          "Keeps your dog comfortable in every season."),
         ("Machine washable removable cover.",
          "Reflective stitching for evening walks.",
          "Available in sizes from small to extra large.")),
    Leaf("Pets > Cats > Cat Accessories", 25, "home",
         ("scratching post", "cat bed", "cat tunnel", "feeding bowl", "cat toy set", "litter tray", "cat tree"),
         ("jute", "felt", "wool", "ceramic", "bamboo", "sisal"),
         ("Keeps curious cats busy and your furniture safe.",
          "A cosy spot for catnaps in the sun.",
          "Encourages natural play and exercise."),
         ("Stable base that will not tip over.",
          "Comes with a bag of organic catnip.",
          "Easy to assemble in minutes.")),
    Leaf("Food & Drink > Pantry > Tea & Coffee", 12, "kitchen",
         ("loose leaf tea", "coffee beans", "ground coffee", "herbal tea", "matcha powder", "hot chocolate",
          "chai blend"),
         ("Ethiopian", "Colombian", "peppermint", "chamomile", "vanilla", "cacao"),
         ("Brew a perfect cup to start the morning.",
          "A comforting treat for slow afternoons.",
          "Tasting notes of caramel, citrus and dark chocolate."),
         ("Roasted in small batches every week.",
          "Packed in a resealable, compostable pouch.",
          "Sourced directly from farmer cooperatives.")),
    Leaf("Food & Drink > Pantry > Snacks & Treats", 8, "kitchen",
         ("granola", "dark chocolate bar", "shortbread", "nut butter", "dried fruit mix", "honey", "popcorn"),
         ("almond", "hazelnut", "sea salt", "raspberry", "oat", "wildflower"),
         ("A delicious snack for busy days.",
          "Perfect with a cup of tea or coffee.",
          "Share it, or keep it all to yourself."),
         ("Made with no artificial colours or flavours.",
          "Suitable for vegetarians.",
          "Baked fresh in small batches.")),
)

# ------------------------------------------------------------------------------------------------------------------
# Magazines catalogue: vocabularies
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Genre:
    """One leaf genre of the magazines catalogue: its category path (below MAGAZINE_ROOT) and the words its items are
    made of. `topics` play the part of the retail materials: every title names one, and users prefer one."""

    path: tuple[str, ...]
    price: float  # typical yearly subscription price
    nouns: tuple[str, ...]  # title words
    topics: tuple[str, ...]
    sentences: tuple[str, ...]  # genre sentences of the descriptions


MAGAZINE_ROOT = "Magazine Subscriptions"
EDITORIAL_STYLES = ("in-depth", "practical", "illustrated", "award-winning", "independent", "essential", "modern",
                    "classic", "complete", "expert", "inspiring", "definitive")
FREQUENCIES = ("weekly", "monthly", "bi-monthly", "quarterly", "ten times a year", "six times a year")
FORMATS = ("Print", "Print + Digital", "Kindle Edition", "Digital Access", "1-year subscription",
           "2-year subscription")
PUBLISHER_SUFFIXES = (" Media", " Publishing", " Press", " Publications", " Media Group", " House", "")
SUBSCRIPTION_FILLER = (
    "Your subscription starts with the next available issue.",
    "Please allow six to eight weeks for delivery of your first issue.",
    "Savings are based on the newsstand cover price.",
    "Each issue arrives in recyclable packaging.",
    "Subscribers get free access to the digital edition and the online archive.",
    "Give a subscription as a gift and we will send a card in your name.",
    "You can cancel at any time and receive a refund for all unmailed issues.",
    "The magazine is printed on paper from responsibly managed forests.",
    "Back issues are available while stocks last.",
    "Special double issues count as two issues toward your subscription.",
    "Prices include shipping and handling within the country.",
    "Auto-renewal keeps your subscription running without interruption, and you can switch it off at any time.",
    "Our editors read every letter we receive and publish the best of them.",
    "Join a community of passionate readers from all over the world.",
    "Each issue runs to well over a hundred pages.",
    "Digital issues can be read on tablets, phones and e-readers.",
    "International delivery is available for an additional charge.",
    "The editorial team includes award-winning writers and photographers.",
    "Subscribers receive exclusive offers and early access to events.",
    "Every issue is designed to be kept, collected and read again.",
)
GENRES = (
    Genre(("Sports, Recreation & Outdoors", "Fishing & Hunting"), 18,
          ("Angler", "Sportsman", "Outdoors", "Rod & Gun", "Field Journal", "Waters"),
          ("fly fishing", "bass fishing", "saltwater fishing", "deer hunting", "waterfowl", "archery"),
          ("Learn where the fish are biting and which lures and flies to tie on.",
           "Our field editors test rods, reels, rifles and bows in every season.",
           "Maps, tide tables and hatch charts help you plan the next trip.",
           "Conservation reports follow the health of rivers, lakes and wild lands.",
           "Stories from guides and trophy hunters bring the backcountry to your door.")),
    Genre(("Sports, Recreation & Outdoors", "Cycling"), 30,
          ("Cyclist", "Velo", "Ride", "Rouleur", "Bike Journal", "Peloton"),
          ("road cycling", "mountain biking", "gravel riding", "bike touring", "bike maintenance", "race training"),
          ("Every issue reviews the latest frames, wheels, components and clothing.",
           "Training plans from professional coaches help you ride faster and further.",
           "Route guides take you from alpine climbs to quiet country lanes.",
           "Workshop pages show you how to service your bike at home.",
           "Race coverage follows the grand tours, the classics and the mud of cyclocross.")),
    Genre(("Sports, Recreation & Outdoors", "Golf"), 20,
          ("Golfer", "Fairway", "Links", "Golf Digest", "Green", "Tee Time"),
          ("putting", "swing technique", "golf equipment", "golf travel", "course design", "tour news"),
          ("Top teaching professionals break down the swing step by step.",
           "Our annual equipment guide tests hundreds of drivers, irons and putters.",
           "Course rankings help you choose where to play next.",
           "Tour coverage goes inside the majors with the players and caddies.",
           "Short-game drills help you save strokes around the green.")),
    Genre(("Sports, Recreation & Outdoors", "Boating & Sailing"), 28,
          ("Sailor", "Yachting", "Boating", "Cruising World", "Harbour", "Helm"),
          ("sailing", "powerboats", "cruising", "seamanship", "yacht racing", "boat maintenance"),
          ("Boat tests cover everything from dinghies to blue-water cruisers.",
           "Seamanship features keep you safe in heavy weather and busy harbours.",
           "Cruising guides lead you to quiet anchorages and lively marinas.",
           "Technical pages explain engines, rigging and electronics in plain language.",
           "Race reports follow regattas and ocean races around the world.")),
    Genre(("Sports, Recreation & Outdoors", "Running & Fitness"), 22,
          ("Runner", "Stride", "Trail", "Marathon", "Pace", "Finish Line"),
          ("marathon training", "trail running", "running shoes", "sports nutrition", "injury prevention",
           "strength training"),
          ("Training plans take you from your first five kilometres to the marathon.",
           "Shoe reviews tested by real runners help you find the right pair.",
           "Nutrition experts explain how to fuel long runs and recover well.",
           "Physiotherapists share exercises that keep you running without injury.",
           "Race calendars and course guides help you plan the season ahead.")),
    Genre(("Hobbies & Crafts", "Needlework & Quilting"), 26,
          ("Quilter", "Stitch", "Needle", "Patchwork", "Yarn", "Thread"),
          ("quilting", "knitting", "crochet", "embroidery", "cross-stitch", "sewing patterns"),
          ("Every issue includes full-size patterns and step-by-step instructions.",
           "Designers share projects for beginners and experienced makers alike.",
           "Colour and fabric guides help you choose the perfect combination.",
           "Readers' galleries celebrate quilts, sweaters and samplers from the community.",
           "Technique lessons cover everything from casting on to binding a quilt.")),
    Genre(("Hobbies & Crafts", "Woodworking"), 27,
          ("Woodworker", "Workshop", "Woodcraft", "Joinery", "Shop Notes", "Bench"),
          ("furniture making", "wood turning", "hand tools", "joinery", "wood finishing", "workshop projects"),
          ("Detailed plans and cutting lists accompany every project.",
           "Tool tests compare table saws, routers, chisels and planes.",
           "Master craftsmen share the joinery techniques of a lifetime.",
           "Finishing guides explain oils, stains and lacquers.",
           "Shop tips help you work safely and get more from a small space.")),
    Genre(("Hobbies & Crafts", "Models & Collecting"), 32,
          ("Modeler", "Railroader", "Collector", "Scale Models", "Hobby", "Layout"),
          ("model railroading", "scale modeling", "coin collecting", "stamp collecting", "model aircraft",
           "miniature painting"),
          ("Layout tours and build reports show what is possible at every scale.",
           "Reviews of new kits, locomotives and tools help you spend wisely.",
           "Price guides and auction reports track the value of collections.",
           "Painting and weathering lessons bring models to life.",
           "Club news and show calendars connect you with other collectors.")),
    Genre(("Home & Garden", "Gardening"), 24,
          ("Gardener", "Garden", "Grower", "Bloom", "Allotment", "Horticulture"),
          ("vegetable gardening", "roses", "garden design", "organic gardening", "houseplants", "lawn care"),
          ("Seasonal checklists tell you what to sow, plant and prune each month.",
           "Garden visits showcase inspiring borders, greenhouses and kitchen gardens.",
           "Plant profiles help you choose varieties that thrive in your soil.",
           "Experts answer readers' questions on pests, diseases and watering.",
           "Design features show how to make the most of small spaces.")),
    Genre(("Home & Garden", "Interior Design"), 30,
          ("Home", "Interiors", "Living", "House Beautiful", "Dwell", "Nest"),
          ("interior design", "home renovation", "architecture", "decorating", "kitchens", "small spaces"),
          ("Every issue tours beautiful homes, from city apartments to country houses.",
           "Designers reveal the colours, fabrics and furniture behind each room.",
           "Renovation stories follow projects from the first sketch to the finished space.",
           "Shopping pages round up the best new furniture, lighting and accessories.",
           "Practical guides cover storage, lighting and layout.")),
    Genre(("Cooking, Food & Wine", "Cooking"), 25,
          ("Cook", "Kitchen", "Table", "Bon Appetit", "Recipes", "Food"),
          ("baking", "vegetarian cooking", "quick dinners", "world cuisine", "grilling", "healthy eating"),
          ("Every issue is packed with tested recipes and step-by-step photographs.",
           "Chefs share the techniques behind their signature dishes.",
           "Seasonal menus make the most of fresh produce.",
           "Kitchen equipment reviews tell you which pans and gadgets are worth buying.",
           "Food writers travel the world in search of new flavours.")),
    Genre(("Cooking, Food & Wine", "Wine & Spirits"), 35,
          ("Wine Spectator", "Cellar", "Vintage", "Decanter", "Spirits", "Cask"),
          ("red wine", "whisky", "champagne", "wine regions", "craft beer", "cocktails"),
          ("Tasting panels rate hundreds of wines and spirits in every issue.",
           "Vintage charts help you decide what to drink now and what to cellar.",
           "Travel features visit vineyards, distilleries and breweries.",
           "Food pairing guides suggest the right bottle for every meal.",
           "Interviews with winemakers and master blenders reveal their craft.")),
    Genre(("Science, History & Nature", "Science"), 30,
          ("Science", "Discover", "Cosmos", "Lab", "Frontiers", "Quantum"),
          ("astronomy", "physics", "biology", "space exploration", "climate science", "neuroscience"),
          ("Leading researchers explain new discoveries in clear language.",
           "Stunning images take you from distant galaxies to living cells.",
           "Features explore the questions at the frontiers of knowledge.",
           "Each issue reports the latest results from laboratories and observatories.",
           "Essays examine how science shapes society and everyday life.")),
    Genre(("Science, History & Nature", "History"), 28,
          ("History", "Chronicle", "Heritage", "Archive", "Past", "Antiquity"),
          ("military history", "ancient history", "world war two", "archaeology", "medieval history",
           "american history"),
          ("Historians bring the past to life with vivid storytelling.",
           "Rare photographs, maps and documents illustrate every article.",
           "Features revisit battles, empires and the people who shaped them.",
           "Archaeology reports describe the latest excavations and finds.",
           "Book reviews help you find the best new history titles.")),
    Genre(("Science, History & Nature", "Nature & Wildlife"), 26,
          ("Wildlife", "Nature", "Wild", "Birder", "Earth", "Habitat"),
          ("birdwatching", "wildlife photography", "conservation", "national parks", "marine life", "insects"),
          ("Naturalists share where and when to see wildlife at its best.",
           "Award-winning photography captures animals in their habitats.",
           "Conservation stories follow the fight to protect threatened species.",
           "Identification guides help you recognise birds, plants and insects.",
           "Travel features explore wild places from the Arctic to the tropics.")),
    Genre(("News, Politics & Opinion", "World News"), 60,
          ("Week", "Times", "Report", "Monitor", "Observer", "Review"),
          ("world affairs", "politics", "foreign policy", "elections", "economics", "current events"),
          ("Correspondents around the world report on the stories that matter.",
           "Analysis and opinion help you make sense of the week's news.",
           "Long reads investigate politics, power and public life.",
           "Interviews with leaders and thinkers go beyond the headlines.",
           "A weekly digest keeps you informed in a few minutes.")),
    Genre(("Business & Investing", "Business & Finance"), 45,
          ("Business", "Money", "Investor", "Fortune", "Markets", "Enterprise"),
          ("personal finance", "investing", "entrepreneurship", "stock markets", "real estate", "leadership"),
          ("Market analysis helps you make smarter investment decisions.",
           "Profiles of founders and executives reveal how great companies are built.",
           "Personal finance pages cover saving, pensions, taxes and property.",
           "Rankings of companies, funds and business schools appear every year.",
           "Columnists debate the economic trends shaping the years ahead.")),
    Genre(("Computers & Technology", "Technology"), 25,
          ("Wired", "Tech", "Computing", "Byte", "Digital", "Code"),
          ("gadgets", "programming", "artificial intelligence", "cybersecurity", "linux", "smartphones"),
          ("Reviews test the latest laptops, phones and gadgets.",
           "Tutorials walk you through software projects step by step.",
           "Features explain how new technology changes work and play.",
           "Security columns help you protect your devices and data.",
           "Buying guides compare the best hardware at every budget.")),
    Genre(("Computers & Technology", "Video Games"), 22,
          ("Gamer", "Play", "Console", "Level Up", "Pixel", "Arcade"),
          ("video games", "console gaming", "pc gaming", "retro games", "strategy games", "esports"),
          ("Reviews and previews cover the biggest releases on every platform.",
           "Walkthroughs and tips help you beat the toughest levels.",
           "Developer interviews go behind the scenes of new games.",
           "Hardware guides help you build the perfect gaming setup.",
           "Retro features celebrate the classics of gaming history.")),
    Genre(("Arts, Music & Photography", "Photography"), 30,
          ("Photographer", "Lens", "Exposure", "Shutter", "Frame", "Camera"),
          ("landscape photography", "portrait photography", "digital cameras", "photo editing",
           "street photography", "film photography"),
          ("Portfolios from leading photographers inspire every issue.",
           "Camera and lens tests help you choose the right kit.",
           "Technique lessons cover light, composition and exposure.",
           "Editing tutorials show how to get the most from your images.",
           "Reader competitions offer prizes and publication.")),
    Genre(("Arts, Music & Photography", "Music"), 24,
          ("Rolling Stone", "Guitar", "Sound", "Rhythm", "Record", "Stage"),
          ("guitar", "jazz", "classical music", "rock music", "music production", "vinyl records"),
          ("Interviews with musicians reveal the stories behind the songs.",
           "Album and concert reviews help you discover new music.",
           "Lessons and tablature help you improve your playing.",
           "Gear reviews test guitars, amplifiers and recording equipment.",
           "Features explore the history of genres and legendary recordings.")),
    Genre(("Arts, Music & Photography", "Art & Design"), 40,
          ("Art", "Artist", "Canvas", "Gallery", "Design", "Studio"),
          ("painting", "drawing", "contemporary art", "graphic design", "sculpture", "art history"),
          ("Artists share their techniques in step-by-step demonstrations.",
           "Exhibition reviews cover the major shows and the best small galleries.",
           "Features trace movements and masters across art history.",
           "Materials guides compare paints, papers and brushes.",
           "Studio visits show how working artists live and create.")),
    Genre(("Travel, City & Regional", "Travel"), 22,
          ("Traveler", "Journeys", "Explorer", "Passport", "Voyager", "Atlas"),
          ("adventure travel", "city breaks", "luxury travel", "road trips", "cruises", "travel photography"),
          ("Destination guides cover where to stay, eat and explore.",
           "Writers and photographers bring back stories from every continent.",
           "Insider tips help you travel better on any budget.",
           "Hotel and airline reviews help you plan with confidence.",
           "Itineraries range from weekend escapes to journeys of a lifetime.")),
    Genre(("Parenting & Families", "Parenting"), 15,
          ("Parents", "Family", "Kids", "Home Life", "Little Ones", "Family Fun"),
          ("pregnancy", "toddlers", "child development", "family activities", "education", "family health"),
          ("Experts answer parents' questions from pregnancy to the teenage years.",
           "Activities and crafts keep the whole family busy at weekends.",
           "Health pages cover sleep, nutrition and common childhood illnesses.",
           "Real families share how they balance work, school and home.",
           "Product tests help you choose prams, car seats and toys.")),
    Genre(("Health, Fitness & Wellness", "Health & Wellness"), 20,
          ("Health", "Wellness", "Vitality", "Balance", "Prevention", "Wellbeing"),
          ("yoga", "nutrition", "weight loss", "mental health", "healthy ageing", "meditation"),
          ("Doctors and dietitians explain the latest health research.",
           "Workouts for every level come with clear photographs.",
           "Healthy recipes make good food simple and delicious.",
           "Features on sleep, stress and mindfulness support your wellbeing.",
           "Readers share how they changed their habits for good.")),
    Genre(("Automotive", "Cars & Motorcycles"), 24,
          ("Motor", "Car", "Driver", "Road & Track", "Garage", "Rider"),
          ("sports cars", "classic cars", "motorcycles", "electric cars", "car reviews", "motorsport"),
          ("Road tests put new cars and motorcycles through their paces.",
           "Buying guides help you find the right used car.",
           "Classic features celebrate legendary machines and their makers.",
           "Technical pages explain engines, suspension and restoration.",
           "Motorsport coverage follows racing series around the world.")),
    Genre(("Literary, Sci-Fi & Mystery", "Literary Magazines"), 30,
          ("Review", "Quarterly", "Letters", "Fiction", "Stories", "Pages"),
          ("short fiction", "poetry", "science fiction", "mystery fiction", "literary criticism", "fantasy"),
          ("Each issue publishes new stories and poems by established and emerging writers.",
           "Essays and criticism explore books old and new.",
           "Interviews with authors reveal how great books are written.",
           "Book reviews help you choose what to read next.",
           "Writing competitions offer new voices a place in print.")),
    Genre(("Professional & Educational Journals", "Professional & Trade", "Construction & Engineering"), 55,
          ("Builder", "Engineering", "Construction", "Contractor", "Structure", "Site"),
          ("civil engineering", "building materials", "project management", "architecture practice",
           "construction safety", "building codes"),
          ("Case studies follow major projects from tender to completion.",
           "Technical articles cover materials, methods and standards.",
           "Safety features explain regulations and best practice on site.",
           "Market reports track costs, contracts and employment.",
           "Product news keeps professionals up to date with new equipment.")),
    Genre(("Professional & Educational Journals", "Professional & Trade", "Medicine & Nursing"), 65,
          ("Medicine", "Clinical", "Nursing", "Practitioner", "Journal", "Care"),
          ("nursing", "clinical practice", "pharmacology", "public health", "primary care", "medical research"),
          ("Peer-reviewed articles present new clinical evidence.",
           "Case reports help practitioners recognise unusual conditions.",
           "Continuing education modules count toward professional development.",
           "Reviews summarise the latest guidelines and treatments.",
           "News pages cover policy, funding and careers in healthcare.")),
    Genre(("Children & Teens", "Kids' Magazines"), 20,
          ("Kids", "Junior", "Explorer", "Young Readers", "Adventure", "Discovery"),
          ("science for kids", "puzzles", "animals", "comics", "reading", "crafts for kids"),
          ("Puzzles, games and jokes keep young readers entertained.",
           "Stories and comics encourage a love of reading.",
           "Science experiments can be done at home with everyday materials.",
           "Animal features bring wildlife from around the world to the page.",
           "Every issue is written for curious minds aged six to twelve.")),
    Genre(("Pets & Animals", "Dogs, Cats & Horses"), 20,
          ("Dog", "Cat", "Horse", "Pet", "Companion", "Paws"),
          ("dog training", "cat care", "horse riding", "pet health", "dog breeds", "equestrian"),
          ("Vets answer readers' questions on health and behaviour.",
           "Training guides help you build a happy relationship with your animal.",
           "Breed profiles help you choose the right companion.",
           "Product reviews test food, toys and equipment.",
           "Heart-warming stories celebrate the animals in our lives.")),
)

# Generation knobs (shares are of rows / items; tuned so that the contract tests and the long-tail shape hold at any
# size from a few hundred items to millions).
ZIPF_EXPONENT = 1.0  # item popularity ~ 1 / (rank + ZIPF_OFFSET) ** ZIPF_EXPONENT
ZIPF_OFFSET = 3.0
COLD_SHARE = 0.08  # items that are never interacted with (drawn from the less popular 70% of ranks)
CATALOG_SHARE = 0.55  # items already in the catalog before the time span starts
LATE_SHARE = 0.08  # items added in the last LATE_WINDOW of the time span
LATE_WINDOW = 0.08
# How a row's item is chosen: global popularity, popularity within a preferred leaf (attribute-biased), uniform among
# non-cold items of a preferred leaf whose title has the user's attribute word, the same across all categories.
MODE_SHARES = (0.30, 0.45, 0.18, 0.07)
ATTR_CANDIDATES = 3  # popularity draws per row in mode 1; the first with the user's attribute word wins
REPEAT_SHARE = 0.10  # rows (after a user's first) that try to re-buy one of the user's earlier items ...
REPEAT_ACCEPT = (0.3, 1.0)  # ... accepted with these probabilities for durable goods / consumables
MAX_REJECTION_ROUNDS = 8

_GOODS_TITLES, _CARE_TITLES = 5, 3  # title templates (see _titles); style word only in templates 0, 2, 4, 5, 6
_TITLE_HAS_STYLE = np.array([True, False, True, False, True, True, True, False])
_TITLE_P = np.array([0.25, 0.2, 0.15, 0.2, 0.2, 0.4, 0.35, 0.25])


# ------------------------------------------------------------------------------------------------------------------
# Profiles: named parameter sets (the defaults are the retail shop; magazines is an Amazon-style ratings catalogue)
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MagazineCatalog:
    """Knobs of the magazines catalogue, whose items carry list-valued columns like Amazon metadata dumps.

    Descriptions are lists of paragraphs: 1 + Poisson(`extra_paragraphs`) paragraphs (at most `max_paragraphs`) of
    `sentences` (inclusive range) sentences each, so that lengths vary a lot around a few hundred words; a few are
    empty lists, as in scraped metadata.
    """

    extra_paragraphs: float = 3.0
    max_paragraphs: int = 9
    sentences: tuple[int, int] = (3, 6)
    empty_description_share: float = 0.03
    price_missing_share: float = 0.35  # scraped prices are often missing
    also_buy_max: int = 12  # most co-interacted items kept per item
    also_buy_window: int = 5  # a row is paired with the user's next this many rows (bounds the cost for heavy users)
    also_view_mean: float = 6.0  # draws of similar items per item (before dropping duplicates and the item itself)
    also_view_empty_share: float = 0.3


@dataclass(frozen=True)
class Profile:
    """The parameters of one kind of shop; `generate_shop` arguments left as None take these defaults.

    The defaults are the retail shop exactly (same draws, same output for a seed). Every knob is a general mechanism
    (activity shape, time trend, rating scale), so a profile describes a kind of data, not one data set.
    """

    name: str = "retail"
    event: str = "purchase"
    n_items: int = 5000
    interactions_per_item: float = 10.0
    rows_per_user: float = 8.0  # default users = rows / this
    days: int = 365
    # users: None lets single-interaction users emerge from the Poisson draws; a share pins it (the rest get >= 2)
    single_share: float | None = None
    activity_sigma: float = 1.8  # log-normal spread of user activity: larger means heavier heavy users
    growth: float = 0.0  # activity grows by e**growth over the span (user centres have density ~ exp(growth * t))
    # items
    catalog_share: float = CATALOG_SHARE
    late_share: float = LATE_SHARE
    late_window: float = LATE_WINDOW
    # ratings: round(base + leaf match + attribute match + quality + noise), a share of disappointed raters -4
    rating_base: float = 3.0
    rating_noise: float = 0.9
    dislike_share: float = 0.0
    time_step: int = 1  # timestamps (and first_seen_ts) are multiples of this many seconds
    catalog: MagazineCatalog | None = None  # None: the retail catalogue (flat string columns)


PROFILES = {
    "retail": Profile(),
    "magazines": Profile(
        name="magazines", event=RATING, n_items=2500, interactions_per_item=36.0, rows_per_user=1.25,
        days=17 * 365, single_share=0.85, activity_sigma=1.8, growth=3.0, catalog_share=0.3, rating_base=3.7,
        rating_noise=1.0, dislike_share=0.08, time_step=DAY, catalog=MagazineCatalog()),
}


@dataclass(frozen=True)
class _Tables:
    """Vocabularies as pyarrow string arrays and per-leaf choice tables (padded index arrays + counts)."""

    paths: pa.Array
    contexts: pa.Array
    departments: np.ndarray  # (L,) department id of each leaf
    n_departments: int
    consumable: np.ndarray  # (L,) bool
    base_price: np.ndarray  # (L,) float
    nouns: pa.Array
    nouns_title: pa.Array
    materials: pa.Array
    materials_title: pa.Array
    styles: pa.Array
    styles_title: pa.Array
    variants: pa.Array
    variants_title: pa.Array
    adjectives: pa.Array
    adjectives_title: pa.Array
    uses: pa.Array
    features: pa.Array
    filler: pa.Array
    leaf_nouns: tuple[np.ndarray, np.ndarray]  # (L, K) global ids, (L,) counts
    leaf_materials: tuple[np.ndarray, np.ndarray]
    leaf_styles: tuple[np.ndarray, np.ndarray]
    leaf_variants: tuple[np.ndarray, np.ndarray]
    leaf_uses: tuple[np.ndarray, np.ndarray]
    leaf_features: tuple[np.ndarray, np.ndarray]


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    table = np.zeros((len(rows), counts.max()), dtype=np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table, counts


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    def vocab(words: list[str]) -> dict[str, int]:
        return {w: i for i, w in enumerate(dict.fromkeys(words))}

    materials = vocab([m for leaf in LEAVES for m in leaf.materials])
    styles = vocab(list(GENERAL_STYLES + CARE_STYLES))
    variants = vocab(list(COLOURS + LIQUID_SIZES + FOOD_SIZES))
    departments = vocab([leaf.path.split(" > ")[0] for leaf in LEAVES])
    nouns = [n for leaf in LEAVES for n in leaf.nouns]
    uses = [x for leaf in LEAVES for x in leaf.uses]
    features = [x for leaf in LEAVES for x in leaf.features]

    def flat_ids(field: str) -> list[list[int]]:
        out, start = [], 0
        for leaf in LEAVES:
            size = len(getattr(leaf, field))
            out.append(list(range(start, start + size)))
            start += size
        return out

    def strings(words) -> pa.Array:
        return pa.array(list(words), type=pa.string())

    variants_title = [v.title() if v in COLOURS else v for v in variants]
    return _Tables(
        paths=strings(leaf.path for leaf in LEAVES),
        contexts=strings(leaf.context for leaf in LEAVES),
        departments=np.array([departments[leaf.path.split(" > ")[0]] for leaf in LEAVES]),
        n_departments=len(departments),
        consumable=np.array([leaf.consumable for leaf in LEAVES]),
        base_price=np.array([leaf.price for leaf in LEAVES], dtype=np.float64),
        nouns=strings(nouns),
        nouns_title=pc.utf8_title(strings(nouns)),
        materials=strings(materials),
        materials_title=pc.utf8_title(strings(materials)),
        styles=strings(styles),
        styles_title=pc.utf8_title(strings(styles)),
        variants=strings(variants),
        variants_title=strings(variants_title),
        adjectives=strings(ADJECTIVES),
        adjectives_title=pc.utf8_title(strings(ADJECTIVES)),
        uses=strings(uses),
        features=strings(features),
        filler=strings(FILLER),
        leaf_nouns=_padded(flat_ids("nouns")),
        leaf_materials=_padded([[materials[m] for m in leaf.materials] for leaf in LEAVES]),
        leaf_styles=_padded([[styles[s] for s in leaf.styles] for leaf in LEAVES]),
        leaf_variants=_padded([[variants[v] for v in leaf.variants] for leaf in LEAVES]),
        leaf_uses=_padded(flat_ids("uses")),
        leaf_features=_padded(flat_ids("features")),
    )


def _pick(table: tuple[np.ndarray, np.ndarray], leaf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each row, a uniformly chosen entry of its leaf's list. table: ((L, K) ids, (L,) counts); leaf, u: (n,)."""
    ids, counts = table
    return ids[leaf, (u * counts[leaf]).astype(np.int64)]


class _GroupSampler:
    """Vectorised draws of an element of a group with probability proportional to the element's weight.

    groups: (n,) int group of each element in [0, n_groups); weights: (n,) non-negative float.
    `sample(group, u)` with group, u: (m,) returns (m,) element indices; only valid where `total[group] > 0`.
    """

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int):
        self.order = np.argsort(groups, kind="stable")
        self.cum = np.cumsum(weights[self.order], dtype=np.float64)
        bounds = np.searchsorted(groups[self.order], np.arange(n_groups + 1))
        cum0 = np.concatenate([[0.0], self.cum])
        self.start, self.end = bounds[:-1], bounds[1:]
        self.lo, self.hi = cum0[self.start], cum0[self.end]
        self.total = self.hi - self.lo

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = self.lo[group] + u * self.total[group]
        pos = np.searchsorted(self.cum, x, side="right")
        return self.order[np.clip(pos, self.start[group], np.maximum(self.end[group] - 1, 0))]


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _by_template(template: np.ndarray, n_templates: int, build) -> pa.Array:
    """Strings built per template: build(k, rows) -> pa string array for the rows (indices) using template k;
    returns the (n,) array in row order."""
    order = np.argsort(template, kind="stable")
    bounds = np.searchsorted(template[order], np.arange(n_templates + 1))
    pieces = [build(k, order[bounds[k]:bounds[k + 1]]) for k in range(n_templates) if bounds[k + 1] > bounds[k]]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pc.take(pa.concat_arrays(pieces), pa.array(inverse))


def _ids(prefix: str, n: int) -> pa.Array:
    """(n,) ids prefix + zero-padded 0..n-1, e.g. SKU000042."""
    width = max(4, len(str(max(n - 1, 0))))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width=width, padding="0")
    return _join(prefix, digits)


def _brands(rng: np.random.Generator, n_items: int, n_departments: int, suffixes: tuple[str, ...] = BRAND_SUFFIXES
            ) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Brand names (B,), department of each brand (B,), price multiplier of each brand (B,)."""
    combos = [h + t + s for s in suffixes for h in BRAND_HEADS for t in BRAND_TAILS]
    n_brands = int(np.clip(n_items // 40, 3 * n_departments, len(combos) // 2))
    p = np.where(np.arange(len(combos)) < len(BRAND_HEADS) * len(BRAND_TAILS), 4.0, 1.0)
    names = np.asarray(combos, dtype=object)[rng.choice(len(combos), size=n_brands, replace=False, p=p / p.sum())]
    department = rng.permutation(np.arange(n_brands) % n_departments)
    return pa.array(list(names), type=pa.string()), department, np.exp(rng.normal(0.0, 0.3, n_brands))


@dataclass
class _Catalog:
    """Per-item arrays, all (n_items,)."""

    leaf: np.ndarray
    material: np.ndarray  # attribute id of the material word (in every title)
    style: np.ndarray  # attribute id of the style word, -1 when the title has none
    consumable: np.ndarray
    first_seen: np.ndarray
    weight: np.ndarray  # popularity weight, 0 for cold items
    quality: np.ndarray  # rating offset
    table: pa.Table  # the items table of the output


def _first_seen(rng: np.random.Generator, n: int, t_start: int, t_end: int, profile: Profile) -> np.ndarray:
    """(n,) first_seen_ts: catalog items before the span, others spread over it, a late batch near its end (the
    items that are cold for a model trained before them)."""
    span = t_end - t_start
    catalog, late = profile.catalog_share, profile.late_share
    kind = rng.choice(3, size=n, p=[catalog, 1.0 - catalog - late, late])
    late_start = t_end - max(int(span * profile.late_window), DAY)
    lo = np.select([kind == 0, kind == 1], [t_start - 2 * 365 * DAY, t_start], late_start)
    hi = np.select([kind == 0, kind == 1], [t_start, late_start], t_end - 3600)
    first_seen = (lo + rng.random(n) * (hi - lo)).astype(np.int64)
    return first_seen - first_seen % profile.time_step if profile.time_step > 1 else first_seen


def _popularity(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) Zipf-like popularity weights over a random ranking; COLD_SHARE of the items (never among the top 30%)
    get 0, so they are never interacted with."""
    rank = rng.permutation(n)
    weight = (rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    tail = np.flatnonzero(rank >= int(0.3 * n))
    weight[rng.choice(tail, size=min(len(tail), int(round(COLD_SHARE * n))), replace=False)] = 0.0
    return weight


def _make_items(rng: np.random.Generator, n_items: int, t_start: int, t_end: int, profile: Profile) -> _Catalog:
    T = _tables()
    n, n_leaves, n_materials = n_items, len(LEAVES), len(T.materials)
    leaf_share = rng.dirichlet(np.full(n_leaves, 2.5))
    leaf = rng.choice(n_leaves, size=n, p=leaf_share)
    noun = _pick(T.leaf_nouns, leaf, rng.random(n))
    material = _pick(T.leaf_materials, leaf, rng.random(n))
    style = _pick(T.leaf_styles, leaf, rng.random(n))
    variant = _pick(T.leaf_variants, leaf, rng.random(n))
    adjective = rng.integers(len(ADJECTIVES), size=n)
    consumable = T.consumable[leaf]

    brand_names, brand_department, brand_price = _brands(rng, n, T.n_departments)
    brand_weight = 1.0 / (rng.permutation(len(brand_department)) + 1.0) ** 0.8
    brand_sampler = _GroupSampler(brand_department, brand_weight, T.n_departments)
    brand = brand_sampler.sample(T.departments[leaf], rng.random(n))

    price = T.base_price[leaf] * brand_price[brand] * np.exp(rng.normal(0.0, 0.45, n))
    price = np.maximum(np.round(price), 1.0) - 0.01

    first_seen = _first_seen(rng, n, t_start, t_end, profile)
    weight = _popularity(rng, n)

    template = np.where(consumable, _GOODS_TITLES + rng.choice(_CARE_TITLES, size=n, p=_TITLE_P[_GOODS_TITLES:]),
                        rng.choice(_GOODS_TITLES, size=n, p=_TITLE_P[:_GOODS_TITLES]))
    words = {
        "brand": lambda r: pc.take(brand_names, brand[r]),
        "Noun": lambda r: pc.take(T.nouns_title, noun[r]),
        "noun": lambda r: pc.take(T.nouns, noun[r]),
        "Material": lambda r: pc.take(T.materials_title, material[r]),
        "material": lambda r: pc.take(T.materials, material[r]),
        "Style": lambda r: pc.take(T.styles_title, style[r]),
        "style": lambda r: pc.take(T.styles, style[r]),
        "Variant": lambda r: pc.take(T.variants_title, variant[r]),
        "variant": lambda r: pc.take(T.variants, variant[r]),
        "Adj": lambda r: pc.take(T.adjectives_title, adjective[r]),
        "adj": lambda r: pc.take(T.adjectives, adjective[r]),
        "context": lambda r: pc.take(T.contexts, leaf[r]),
    }
    title = _by_template(template, _GOODS_TITLES + _CARE_TITLES, lambda k, r: _fill(_TITLES[k], words, r))
    description = _descriptions(rng, n, leaf, consumable, words)

    table = pa.table({
        S.ITEM_ID: _ids("SKU", n),
        S.TITLE: title,
        S.DESCRIPTION: description,
        S.CATEGORY: pc.take(T.paths, leaf),
        S.BRAND: pc.take(brand_names, brand),
        S.PRICE: pa.array(price, type=pa.float64()),
        S.FIRST_SEEN: pa.array(first_seen, type=pa.int64()),
    })
    style_attr = np.where(_TITLE_HAS_STYLE[template], n_materials + style, -1)
    return _Catalog(leaf=leaf, material=material, style=style_attr, consumable=consumable, first_seen=first_seen,
                    weight=weight, quality=rng.normal(0.0, 0.5, n), table=table)


# Templates: "{name}" is a word from `words` in _make_items; everything else is literal.
_TITLES = (
    "{brand} {Style} {Material} {Noun}",
    "{Adj} {Variant} {Material} {Noun}",
    "{Material} {Noun} - {Style}, {Variant}",
    "{brand} {Noun} in {Variant} {Material}",
    "{Style} {Material} {Noun} by {brand}",
    "{brand} {Style} {Material} {Noun}, {Variant}",
    "{Material} {Noun} by {brand} - {Style}, {Variant}",
    "{Adj} {Material} {Noun} ({Variant})",
)
_INTROS = (
    "This {adj} {noun} from {brand} is made from {material} in a {variant} finish. ",
    "Crafted from {material}, the {brand} {noun} brings a {style} look to your {context}. ",
    "{brand} presents the {adj} {style} {noun} in {variant} {material}. ",
    "Meet the {noun}: our {adj}, {style} take on a {context} classic, finished in {material}. ",
    "This {adj} {noun} from {brand} is made with {material}. ",
    "From {brand}, the {style} {noun} with {material} is a {context} favourite. ",
)
_STYLE_SENTENCES = (
    "Its {style} design feels at home in any {context}. ",
    "Part of our {style} range, made with care. ",
)
_ABOUT = "About {brand}: an independent maker of {style} {material} products for the {context}. "


def _fill(template: str, words: dict, rows: np.ndarray) -> pa.Array:
    parts = []
    for i, chunk in enumerate(template.replace("}", "{").split("{")):
        if i % 2:
            parts.append(words[chunk](rows))
        elif chunk:
            parts.append(chunk)
    return _join(*parts) if len(parts) > 1 else pc.cast(parts[0], pa.string())


def _descriptions(rng: np.random.Generator, n: int, leaf: np.ndarray, consumable: np.ndarray, words: dict) -> pa.Array:
    """(n,) descriptions: intro, optional style sentence, a use, 1-2 features, optional spec/about, 1-4 fillers."""
    T = _tables()
    empty = pa.scalar("", pa.string())
    intro = np.where(consumable, 4 + rng.integers(2, size=n), rng.integers(4, size=n))
    intro_text = _by_template(intro, len(_INTROS), lambda k, r: _fill(_INTROS[k], words, r))
    style_text = _by_template(consumable.astype(np.int64), 2, lambda k, r: _fill(_STYLE_SENTENCES[k], words, r))
    style_text = pc.if_else(pa.array(rng.random(n) < 0.6), style_text, empty)
    use = _join(pc.take(T.uses, _pick(T.leaf_uses, leaf, rng.random(n))), " ")
    feature_ids, feature_counts = T.leaf_features
    first_feature = (rng.random(n) * feature_counts[leaf]).astype(np.int64)
    second_feature = (first_feature + 1) % feature_counts[leaf]
    feature1 = _join(pc.take(T.features, feature_ids[leaf, first_feature]), " ")
    feature2 = pc.if_else(pa.array((rng.random(n) < 0.5) & (feature_counts[leaf] > 1)),
                          _join(pc.take(T.features, feature_ids[leaf, second_feature]), " "), empty)
    width, depth = rng.integers(8, 80, size=n), rng.integers(5, 60, size=n)
    spec = pc.if_else(
        pa.array(consumable),
        _join("Net contents: ", words["variant"](np.arange(n)), ". "),
        _join("Measures ", pc.cast(pa.array(width), pa.string()), " x ", pc.cast(pa.array(depth), pa.string()),
              " cm. "))
    spec = pc.if_else(pa.array(rng.random(n) < 0.4), spec, empty)
    about = pc.if_else(pa.array(rng.random(n) < 0.15), _fill(_ABOUT, words, np.arange(n)), empty)
    n_filler = rng.integers(1, 5, size=n)
    first_filler, step = rng.integers(len(FILLER), size=n), 1 + rng.integers(len(FILLER) - 1, size=n)
    fillers = []
    for j in range(4):
        sentence = _join(pc.take(T.filler, (first_filler + j * step) % len(FILLER)), " ")
        fillers.append(pc.if_else(pa.array(n_filler > j), sentence, empty))
    text = _join(intro_text, style_text, use, feature1, feature2, spec, about, *fillers)
    return pc.utf8_rtrim_whitespace(text)


# ------------------------------------------------------------------------------------------------------------------
# Magazines catalogue: items with list-valued category, description, also_buy and also_view
# ------------------------------------------------------------------------------------------------------------------

ALSO_BUY, ALSO_VIEW = "also_buy", "also_view"
LIST_COLUMNS = (S.CATEGORY, S.DESCRIPTION, ALSO_BUY, ALSO_VIEW)  # list<string> in the magazines catalogue
CSV_SEPARATORS = {S.CATEGORY: " > "}  # how CSV output joins a list cell; other list columns: a space

_MAG_TITLES = (
    "{Topic} {Noun}",
    "{Style} {Topic}",
    "The {Topic} {Noun}",
    "{Noun}: {Topic} ({Format})",
    "{Style} {Noun} - {Topic}",
    "{publisher} {Topic} {Noun}",
)
_MAG_TITLE_HAS_STYLE = np.array([False, True, False, False, True, False])
_MAG_TITLE_P = np.array([0.25, 0.15, 0.2, 0.15, 0.1, 0.15])
_MAG_INTROS = (
    "{title} is the {style} magazine for everyone who loves {topic}.",
    "Published {frequency} by {publisher}, {title} brings you the best of {topic} and {topic2}.",
    "For more than {years} years {title} has been the trusted read for {topic} enthusiasts.",
    "Every issue of {title} is packed with {style} coverage of {topic}, from {topic2} to {topic3}.",
)
_MAG_SENTENCES = (
    "Inside each issue you will find features on {topic}, {topic2} and {topic3}.",
    "Our writers cover {topic} with the depth and care it deserves.",
    "Regular columns on {topic2} and {topic} keep you up to date all year round.",
    "Readers who follow {topic} rely on our {style} reporting and honest reviews.",
    "Expert contributors share their best advice on {topic2}, from first steps to advanced technique.",
    "A special section every season is devoted to {topic}.",
    "Long-form stories, interviews and {style} guides to {topic} fill every page.",
    "You will also find news, letters and reader photos about {topic2}.",
    "{publisher} publishes {title} {frequency} for readers who care about {topic}.",
    "Subscribe to {title} and never miss an issue about {topic}.",
)
_MAG_KIND_P = (0.3, 0.3, 0.4)  # later sentences: topic template, genre sentence, subscription filler


@dataclass(frozen=True)
class _MagazineTables:
    """Magazine vocabularies as pyarrow arrays and per-genre choice tables. Field names match `_Tables` where
    `_make_users` reads them: `materials` are the topic words, `styles` the editorial styles."""

    paths: pa.Array  # (L,) list<string>: MAGAZINE_ROOT, group, ..., genre
    groups: np.ndarray  # (L,) id of the genre's group (second path level); publishers specialise in one
    n_groups: int
    base_price: np.ndarray  # (L,)
    nouns_title: pa.Array
    materials: pa.Array
    materials_title: pa.Array
    styles: pa.Array
    styles_title: pa.Array
    formats: pa.Array
    frequencies: pa.Array
    sentences: pa.Array
    filler: pa.Array
    leaf_nouns: tuple[np.ndarray, np.ndarray]  # (L, K) global ids, (L,) counts
    leaf_materials: tuple[np.ndarray, np.ndarray]
    leaf_styles: tuple[np.ndarray, np.ndarray]  # every genre: all editorial styles
    leaf_sentences: tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def _magazine_tables() -> _MagazineTables:
    topics = {t: i for i, t in enumerate(dict.fromkeys(t for g in GENRES for t in g.topics))}
    groups = {name: i for i, name in enumerate(dict.fromkeys(g.path[0] for g in GENRES))}

    def flat_ids(field: str) -> list[list[int]]:
        out, start = [], 0
        for genre in GENRES:
            size = len(getattr(genre, field))
            out.append(list(range(start, start + size)))
            start += size
        return out

    def strings(words) -> pa.Array:
        return pa.array(list(words), type=pa.string())

    return _MagazineTables(
        paths=pa.array([[MAGAZINE_ROOT, *g.path] for g in GENRES], type=pa.list_(pa.string())),
        groups=np.array([groups[g.path[0]] for g in GENRES]),
        n_groups=len(groups),
        base_price=np.array([g.price for g in GENRES], dtype=np.float64),
        nouns_title=strings(n for g in GENRES for n in g.nouns),
        materials=strings(topics),
        materials_title=pc.utf8_title(strings(topics)),
        styles=strings(EDITORIAL_STYLES),
        styles_title=pc.utf8_title(strings(EDITORIAL_STYLES)),
        formats=strings(FORMATS),
        frequencies=strings(FREQUENCIES),
        sentences=strings(x for g in GENRES for x in g.sentences),
        filler=strings(SUBSCRIPTION_FILLER),
        leaf_nouns=_padded(flat_ids("nouns")),
        leaf_materials=_padded([[topics[t] for t in g.topics] for g in GENRES]),
        leaf_styles=_padded([list(range(len(EDITORIAL_STYLES)))] * len(GENRES)),
        leaf_sentences=_padded(flat_ids("sentences")),
    )


def _make_magazines(rng: np.random.Generator, n_items: int, t_start: int, t_end: int, profile: Profile) -> _Catalog:
    """The magazines catalogue: like `_make_items`, with topic words in the part of materials, publishers in the
    part of brands, list-valued category and description, and prices that are sometimes missing."""
    T, params = _magazine_tables(), profile.catalog
    n, n_leaves = n_items, len(GENRES)
    leaf = rng.choice(n_leaves, size=n, p=rng.dirichlet(np.full(n_leaves, 2.5)))
    noun = _pick(T.leaf_nouns, leaf, rng.random(n))
    topic_ids, topic_counts = T.leaf_materials
    slot = (rng.random(n) * topic_counts[leaf]).astype(np.int64)  # the item's topic: its slot in the genre's list
    topic = topic_ids[leaf, slot]
    style = rng.integers(len(EDITORIAL_STYLES), size=n)
    fmt, frequency = rng.integers(len(FORMATS), size=n), rng.integers(len(FREQUENCIES), size=n)
    names, group, brand_price = _brands(rng, n, T.n_groups, PUBLISHER_SUFFIXES)
    brand_weight = 1.0 / (rng.permutation(len(group)) + 1.0) ** 0.8
    publisher = _GroupSampler(group, brand_weight, T.n_groups).sample(T.groups[leaf], rng.random(n))
    price = T.base_price[leaf] * brand_price[publisher] * np.exp(rng.normal(0.0, 0.45, n))
    price = np.where(rng.random(n) < params.price_missing_share, np.nan, np.maximum(np.round(price), 1.0) - 0.01)
    first_seen = _first_seen(rng, n, t_start, t_end, profile)
    weight = _popularity(rng, n)
    template = rng.choice(len(_MAG_TITLES), size=n, p=_MAG_TITLE_P)
    words = {
        "Noun": lambda r: pc.take(T.nouns_title, noun[r]),
        "Topic": lambda r: pc.take(T.materials_title, topic[r]),
        "topic": lambda r: pc.take(T.materials, topic[r]),
        "Style": lambda r: pc.take(T.styles_title, style[r]),
        "style": lambda r: pc.take(T.styles, style[r]),
        "Format": lambda r: pc.take(T.formats, fmt[r]),
        "frequency": lambda r: pc.take(T.frequencies, frequency[r]),
        "publisher": lambda r: pc.take(names, publisher[r]),
    }
    title = _by_template(template, len(_MAG_TITLES), lambda k, r: _fill(_MAG_TITLES[k], words, r))
    words["title"] = lambda r: pc.take(title, r)
    years = pc.cast(pa.array(rng.integers(3, 90, size=n)), pa.string())
    words["years"] = lambda r: pc.take(years, r)
    table = pa.table({
        S.ITEM_ID: _ids("MAG", n),
        S.TITLE: title,
        S.DESCRIPTION: _magazine_descriptions(rng, leaf, slot, words, params),
        S.CATEGORY: pc.take(T.paths, leaf),
        S.BRAND: pc.take(names, publisher),
        S.PRICE: pa.array(price, type=pa.float64()),
        S.FIRST_SEEN: pa.array(first_seen, type=pa.int64()),
    })
    style_attr = np.where(_MAG_TITLE_HAS_STYLE[template], len(T.materials) + style, -1)
    return _Catalog(leaf=leaf, material=topic, style=style_attr, consumable=np.zeros(n, dtype=bool),
                    first_seen=first_seen, weight=weight, quality=rng.normal(0.0, 0.5, n), table=table)


def _magazine_descriptions(rng: np.random.Generator, leaf: np.ndarray, slot: np.ndarray, words: dict,
                           params: MagazineCatalog) -> pa.Array:
    """(n,) list<string> of paragraphs. The first sentence introduces the title and its topic; later ones are topic
    templates (the item's topic and two other topics of its genre), genre sentences and subscription boilerplate,
    cycled so that a description rarely repeats a sentence. leaf, slot: (n,) genre and topic slot of each item;
    words: item-level word functions of `_make_magazines`."""
    T, n = _magazine_tables(), len(leaf)
    n_par = np.minimum(1 + rng.poisson(params.extra_paragraphs, n), params.max_paragraphs)
    n_par[rng.random(n) < params.empty_description_share] = 0
    par_item = np.repeat(np.arange(n), n_par)
    par_len = rng.integers(params.sentences[0], params.sentences[1] + 1, size=len(par_item))
    item = np.repeat(par_item, par_len)  # item of each sentence, sentences in item order
    m, n_intro, n_templates = len(item), len(_MAG_INTROS), len(_MAG_INTROS) + len(_MAG_SENTENCES)
    first = _rank_within(item) == 0
    kind = np.where(first, -1, rng.choice(3, size=m, p=_MAG_KIND_P))
    # every kind is cycled from a random start per item, so a description rarely repeats a sentence
    start = rng.integers(1 << 30, size=n)[item]
    rank = np.zeros(m, dtype=np.int64)
    for k in range(3):
        rows = np.flatnonzero(kind == k)
        rank[rows] = _rank_within(item[rows])
    sentence_ids, sentence_counts = T.leaf_sentences
    genre_sentence = sentence_ids[leaf[item], (start + rank) % sentence_counts[leaf[item]]]
    filler = (start + rank) % len(SUBSCRIPTION_FILLER)
    template = np.select([first, kind == 0, kind == 1], [start % n_intro, n_intro + (start + rank) % len(
        _MAG_SENTENCES), n_templates], n_templates + 1)
    topic_ids, topic_counts = T.leaf_materials
    count = np.maximum(topic_counts[leaf[item]], 3)  # offsets of two other topics, distinct from the item's
    second = 1 + (rng.random(m) * (count - 1)).astype(np.int64)
    third = 1 + (second + (rng.random(m) * (count - 2)).astype(np.int64)) % (count - 1)
    own = slot[item]
    other = [topic_ids[leaf[item], (own + offset) % topic_counts[leaf[item]]] for offset in (second, third)]
    row_words = {name: (lambda r, f=f: f(item[r])) for name, f in words.items()}
    row_words["topic2"] = lambda r: pc.take(T.materials, other[0][r])
    row_words["topic3"] = lambda r: pc.take(T.materials, other[1][r])
    templates = _MAG_INTROS + _MAG_SENTENCES

    def build(k: int, rows: np.ndarray) -> pa.Array:
        if k < n_templates:
            return _fill(templates[k], row_words, rows)
        return pc.take(T.sentences, genre_sentence[rows]) if k == n_templates else pc.take(T.filler, filler[rows])

    sentences = _by_template(template, n_templates + 2, build) if m else pa.array([], type=pa.string())
    paragraphs = pc.binary_join(_lists(np.repeat(np.arange(len(par_item)), par_len), sentences, len(par_item)), " ")
    return _lists(par_item, paragraphs, n)


def _lists(owner: np.ndarray, values: pa.Array, n: int) -> pa.Array:
    """(n,) list array whose list i holds the values of the rows with owner i. owner: (m,) sorted; values: (m,)."""
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _rank_within(group: np.ndarray) -> np.ndarray:
    """(n,) position of each element within its run of equal values. group: (n,) sorted."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1])
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def _related(rng: np.random.Generator, catalog: _Catalog, user: np.ndarray, item: np.ndarray, ts: np.ndarray,
             params: MagazineCatalog) -> tuple[pa.Array, pa.Array]:
    """(also_buy, also_view), each (n_items,) list<string> of item ids, like the lists of Amazon metadata.

    also_buy: the items most often interacted with by the same user within `also_buy_window` rows (empty for items
    whose users came once); computed from the whole log, as the scraped lists are, so they know the future.
    also_view: items of the same genre (half of the draws: also of the same topic), popularity-weighted; cold items
    get a floor weight, since they are viewed without being bought. user, item, ts: (m,) the interaction rows.
    """
    n = len(catalog.leaf)
    ids = catalog.table[S.ITEM_ID].combine_chunks()
    order = np.lexsort((ts, user))
    u, it = user[order], item[order]
    a_parts, b_parts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for k in range(1, params.also_buy_window + 1):  # both directions of each pair (row, the user's k-th next row)
        same = u[k:] == u[:-k]
        a_parts += [it[:-k][same], it[k:][same]]
        b_parts += [it[k:][same], it[:-k][same]]
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    key, count = np.unique((a * n + b)[a != b], return_counts=True)
    a, b = key // n, key % n
    order = np.lexsort((rng.random(len(a)), -count, a))  # per item: most co-interacted first, ties at random
    a, b = a[order], b[order]
    keep = _rank_within(a) < params.also_buy_max
    also_buy = _lists(a[keep], pc.take(ids, pa.array(b[keep])), n)

    k = np.where(rng.random(n) < params.also_view_empty_share, 0, 1 + rng.poisson(params.also_view_mean - 1, n))
    owner = np.repeat(np.arange(n), k)
    weight = catalog.weight + 0.1 * catalog.weight.mean() + 1e-12
    n_topics = len(_magazine_tables().materials)
    by_topic = _GroupSampler(catalog.leaf * n_topics + catalog.material, weight, len(GENRES) * n_topics)
    by_genre = _GroupSampler(catalog.leaf, weight, len(GENRES))
    draw = np.where(rng.random(len(owner)) < 0.5,
                    by_topic.sample((catalog.leaf * n_topics + catalog.material)[owner], rng.random(len(owner))),
                    by_genre.sample(catalog.leaf[owner], rng.random(len(owner))))
    keep = _first_occurrence(owner * n + draw)
    keep = keep[draw[keep] != owner[keep]]
    return also_buy, _lists(owner[keep], pc.take(ids, pa.array(draw[keep])), n)


@dataclass
class _Users:
    """Per-user arrays, all (n_users,) unless noted."""

    count: np.ndarray  # rows of the user (>= 1)
    prefs: np.ndarray  # (n_users, 3) preferred leaves; only the first n_prefs of a row are used
    n_prefs: np.ndarray
    attribute: np.ndarray  # preferred attribute id (material id, or n_materials + style id)
    start: np.ndarray  # active period [start, end] in unix seconds
    end: np.ndarray


def _activity(rng: np.random.Generator, n_users: int, n_rows: int, profile: Profile) -> np.ndarray:
    """(n_users,) rows per user, >= 1, summing to about n_rows: heavy-tailed, since most shoppers and raters come
    once and a few come back all the time. With `profile.single_share` that share of users has exactly one row and
    the others at least two; otherwise the single-row share is whatever the Poisson draws give."""
    cap = max(20 * n_rows // n_users, min(1000, max(n_rows // 40, 50)))
    if profile.single_share is None:
        # everyone has one row, the rest is spread by log-normal weights (capped)
        activity = rng.lognormal(0.0, profile.activity_sigma, n_users)
        extra = rng.poisson(max(n_rows - n_users, 0) * activity / activity.sum())
        return 1 + np.minimum(extra, cap - 1)
    active = rng.random(n_users) >= profile.single_share
    activity = rng.lognormal(0.0, profile.activity_sigma, n_users) * active
    budget = max(n_rows - n_users - int(active.sum()), 0)
    extra = rng.poisson(budget * activity / max(activity.sum(), 1e-12))
    return 1 + active + np.minimum(extra, max(cap - 2, 0))


def _grown(u: np.ndarray, growth: float) -> np.ndarray:
    """Uniform draws u in [0, 1) mapped to a density ~ exp(growth * x) on [0, 1): later times are likelier when
    growth > 0, as on platforms whose audience grows over the years. growth = 0 is the identity."""
    return np.log1p(u * np.expm1(growth)) / growth if growth else u


def _make_users(rng: np.random.Generator, T: _Tables | _MagazineTables, n_users: int, n_rows: int,
                leaf_weight: np.ndarray, t_start: int, t_end: int, profile: Profile) -> _Users:
    """Users with activity, tastes and active periods. T: the vocabulary tables (`_tables()` or
    `_magazine_tables()`), for the per-leaf attribute words users prefer."""
    count = _activity(rng, n_users, n_rows, profile)
    # tastes: 1-3 leaves (more popular leaves are preferred more often), one attribute word of the first leaf
    prefs = rng.choice(len(leaf_weight), size=(n_users, 3), p=leaf_weight / leaf_weight.sum())
    n_prefs = rng.choice([1, 2, 3], size=n_users, p=[0.4, 0.35, 0.25])
    first = prefs[:, 0]
    style = len(T.materials) + _pick(T.leaf_styles, first, rng.random(n_users))
    attribute = np.where(rng.random(n_users) < 0.45, style, _pick(T.leaf_materials, first, rng.random(n_users)))
    # active period around a random centre; heavier users stay longer
    span = t_end - 1 - t_start
    centre = t_start + _grown(rng.random(n_users), profile.growth) * span
    half = span * np.minimum(0.6, (0.01 + 0.03 * np.sqrt(count)) * rng.gamma(2.0, 0.5, n_users))
    half = np.maximum(half, DAY)
    start = np.clip(centre - half, t_start, t_end - 1).astype(np.int64)
    end = np.clip(centre + half, t_start, t_end - 1).astype(np.int64)
    return _Users(count=count, prefs=prefs, n_prefs=n_prefs, attribute=attribute, start=start, end=end)


class _ItemChooser:
    """Vectorised item choice for interaction rows, by mode (see MODE_SHARES)."""

    def __init__(self, catalog: _Catalog, n_leaves: int, n_attributes: int):
        n = len(catalog.leaf)
        self.catalog, self.n_attributes = catalog, n_attributes
        self.popular = _GroupSampler(np.zeros(n, dtype=np.int64), catalog.weight, 1)
        self.in_leaf = _GroupSampler(catalog.leaf, catalog.weight, n_leaves)
        # (item, attribute) pairs of non-cold items: material always, style when the title has one
        warm = catalog.weight > 0
        has_style = warm & (catalog.style >= 0)
        self.pair_item = np.concatenate([np.flatnonzero(warm), np.flatnonzero(has_style)])
        pair_attr = np.concatenate([catalog.material[warm], catalog.style[has_style]])
        pair_leaf = catalog.leaf[self.pair_item]
        ones = np.ones(len(self.pair_item))
        self.leaf_attr = _GroupSampler(pair_leaf * n_attributes + pair_attr, ones, n_leaves * n_attributes)
        self.attr = _GroupSampler(pair_attr, ones, n_attributes)

    def has_attribute(self, item: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        return (self.catalog.material[item] == attribute) | (self.catalog.style[item] == attribute)

    def choose(self, rng: np.random.Generator, mode: np.ndarray, leaf: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        """mode, leaf, attribute: (m,) per row; returns (m,) item indices."""
        m = len(mode)
        item = np.empty(m, dtype=np.int64)
        # modes 2/3 fall back to mode 1 when the group is empty, mode 1 falls back to mode 0
        key = leaf * self.n_attributes + attribute
        mode = np.where((mode == 2) & (self.leaf_attr.total[key] == 0), 1, mode)
        mode = np.where((mode == 3) & (self.attr.total[attribute] == 0), 1, mode)
        mode = np.where((mode == 1) & (self.in_leaf.total[leaf] == 0), 0, mode)
        rows = np.flatnonzero(mode == 0)
        item[rows] = self.popular.sample(np.zeros(len(rows), dtype=np.int64), rng.random(len(rows)))
        rows = np.flatnonzero(mode == 1)
        best = self.in_leaf.sample(leaf[rows], rng.random(len(rows)))
        found = self.has_attribute(best, attribute[rows])
        for _ in range(ATTR_CANDIDATES - 1):
            candidate = self.in_leaf.sample(leaf[rows], rng.random(len(rows)))
            take = ~found & self.has_attribute(candidate, attribute[rows])
            best = np.where(take, candidate, best)
            found |= take
        item[rows] = best
        rows = np.flatnonzero(mode == 2)
        item[rows] = self.pair_item[self.leaf_attr.sample(key[rows], rng.random(len(rows)))]
        rows = np.flatnonzero(mode == 3)
        item[rows] = self.pair_item[self.attr.sample(attribute[rows], rng.random(len(rows)))]
        return item


def _make_interactions(rng: np.random.Generator, catalog: _Catalog, users: _Users, event: str, t_end: int,
                       chooser: _ItemChooser, profile: Profile
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows as arrays (user, item, timestamp, value), each (n_rows,), sorted by (timestamp, user)."""
    user = np.repeat(np.arange(len(users.count), dtype=np.int64), users.count)
    n = len(user)
    ts = users.start[user] + (rng.random(n) * (users.end - users.start)[user]).astype(np.int64)
    mode = np.searchsorted(np.cumsum(MODE_SHARES)[:-1], rng.random(n), side="right")
    leaf = users.prefs[user, (rng.random(n) * users.n_prefs[user]).astype(np.int64)]
    attribute = users.attribute[user]
    # an item can only be chosen once it is in the catalog: redraw rows that hit a later item, then move the few
    # left to a random time after the item's first_seen
    item = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    for _ in range(MAX_REJECTION_ROUNDS):
        item[todo] = chooser.choose(rng, mode[todo], leaf[todo], attribute[todo])
        todo = todo[catalog.first_seen[item[todo]] > ts[todo]]
        if not len(todo):
            break
    if len(todo):
        seen = catalog.first_seen[item[todo]]
        ts[todo] = seen + (rng.random(len(todo)) * (t_end - 1 - seen)).astype(np.int64)
    # per user in time order: repeat purchases copy one of the user's earlier items (available then, so now too)
    order = np.lexsort((ts, user))
    user, item, ts = user[order], item[order], ts[order]
    offset = np.concatenate([[0], np.cumsum(users.count)[:-1]])[user]
    position = np.arange(n) - offset
    if event == RATING:
        keep = _first_occurrence(user * len(catalog.leaf) + item)
        user, item, ts = user[keep], item[keep], ts[keep]
        value = _ratings(rng, catalog, users, chooser, user, item, profile)
    else:
        earlier = offset + (rng.random(n) * position).astype(np.int64)
        accept = np.where(catalog.consumable[item[earlier]], REPEAT_ACCEPT[1], REPEAT_ACCEPT[0])
        repeat = (position > 0) & (rng.random(n) < REPEAT_SHARE * accept)
        item = np.where(repeat, item[earlier], item)
        value = np.minimum(rng.geometric(0.7, n), 12).astype(np.float64)
    if profile.time_step > 1:  # floors keep ts >= first_seen_ts, which is floored too
        ts = ts - ts % profile.time_step
    order = np.lexsort((user, ts))
    return user[order], item[order], ts[order], value[order]


def _ratings(rng: np.random.Generator, catalog: _Catalog, users: _Users, chooser: _ItemChooser, user: np.ndarray,
             item: np.ndarray, profile: Profile) -> np.ndarray:
    """(m,) stars 1..5 of the rows (user, item), each (m,): higher when the item is in one of the user's leaves and
    has the user's attribute word, so ratings carry the same taste signal as the choices. `profile.dislike_share`
    of the rows lose 4 stars, which gives the J-shape (many 5s, a bump of 1s) of public rating dumps."""
    leaf_match = (users.prefs[user] == catalog.leaf[item][:, None])
    leaf_match = (leaf_match & (np.arange(3) < users.n_prefs[user][:, None])).any(axis=1)
    score = (profile.rating_base + 1.0 * leaf_match + 0.8 * chooser.has_attribute(item, users.attribute[user])
             + catalog.quality[item] + rng.normal(0.0, profile.rating_noise, len(user)))
    if profile.dislike_share > 0:
        score = score - 4.0 * (rng.random(len(user)) < profile.dislike_share)
    return np.clip(np.round(score), 1, 5)


def _first_occurrence(key: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of each key value. key: (n,)."""
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def get_profile(profile: str | Profile) -> Profile:
    """The Profile of a name in PROFILES (or the Profile itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise UserError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return PROFILES[profile]


def generate_shop(n_items: int | None = None, interactions_per_item: float | None = None, n_users: int | None = None,
                  days: int | None = None, event: str | None = None, seed: int = 0,
                  profile: str | Profile = "retail") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic long-tail shop; the same arguments always give equal frames.

    Args:
        n_items: catalog size.
        interactions_per_item: target average rows per catalog item (the total is about n_items times this; in
            "rating" mode repeated (user, item) pairs are dropped, so slightly fewer).
        n_users: number of users, each with at least one row; defaults to about n_items * interactions_per_item /
            profile.rows_per_user (8 in retail).
        days: length of the time span, which ends at END_TS (2024-01-01 00:00 UTC).
        event: "purchase" (value = quantity >= 1, repeat purchases happen) or "rating" (value = rating 1..5,
            higher when the item matches the user's categories and attribute word).
        seed: random seed.
        profile: a name in PROFILES or a Profile; arguments left as None take its defaults (retail: 5000 items,
            10 rows per item, 365 days, purchases; magazines: 2500 items, 36 rows per item, 17 years, ratings).

    Returns:
        (items, interactions):
        items, (n_items, 7): item_id str (unique, "SKU0000042"), title str, description str (several sentences),
        category str ("Home > Kitchen > Cookware"), brand str, price float64, first_seen_ts int64 (unix seconds;
        some before the span, some late in it). The magazines profile ("MAG0042") has 9 columns: description and
        category are lists of strings (paragraphs; ["Magazine Subscriptions", group, ..., genre]), price is NaN
        for some items, and also_buy / also_view are lists of item ids (possibly empty); list cells are numpy
        arrays, as pandas reads them from Parquet.
        interactions, (about n_items * interactions_per_item, 5), sorted by timestamp: user_id str ("U0000042"),
        item_id str, timestamp int64 (unix seconds, >= the item's first_seen_ts), event str, value float64.
    """
    items, interactions = _generate(n_items, interactions_per_item, n_users, days, event, seed, profile)
    return items.to_pandas(), interactions.to_pandas()


def _generate(n_items: int | None = None, interactions_per_item: float | None = None, n_users: int | None = None,
              days: int | None = None, event: str | None = None, seed: int = 0, profile: str | Profile = "retail"
              ) -> tuple[pa.Table, pa.Table]:
    """generate_shop as Arrow tables, so that list columns keep their list type on the way to the files."""
    p = get_profile(profile)
    n_items = p.n_items if n_items is None else n_items
    interactions_per_item = p.interactions_per_item if interactions_per_item is None else interactions_per_item
    days, event = p.days if days is None else days, p.event if event is None else event
    if event not in EVENTS:
        raise UserError(f"event must be one of {', '.join(EVENTS)}, got {event!r}")
    if n_items < 1 or days < 1 or not interactions_per_item > 0:
        raise UserError(f"need n_items >= 1, days >= 1 and interactions_per_item > 0; got n_items={n_items}, "
                        f"days={days}, interactions_per_item={interactions_per_item}")
    n_rows = max(1, int(round(n_items * interactions_per_item)))
    if n_users is None:
        n_users = max(1, int(round(n_rows / p.rows_per_user)))
    if n_users < 1:
        raise UserError(f"n_users must be >= 1, got {n_users}")
    rng = np.random.default_rng(seed)
    t_end, t_start = END_TS, END_TS - days * DAY
    if p.catalog is None:
        T, catalog = _tables(), _make_items(rng, n_items, t_start, t_end, p)
    else:
        T, catalog = _magazine_tables(), _make_magazines(rng, n_items, t_start, t_end, p)
    n_leaves = len(T.leaf_materials[1])
    leaf_weight = np.bincount(catalog.leaf, weights=catalog.weight, minlength=n_leaves)
    users = _make_users(rng, T, n_users, n_rows, leaf_weight, t_start, t_end, p)
    chooser = _ItemChooser(catalog, n_leaves, len(T.materials) + len(T.styles))
    user, item, ts, value = _make_interactions(rng, catalog, users, event, t_end, chooser, p)
    interactions = pa.table({
        S.USER_ID: pc.take(_ids("U", n_users), pa.array(user)),
        S.ITEM_ID: pc.take(catalog.table[S.ITEM_ID], pa.array(item)),
        S.TIMESTAMP: pa.array(ts, type=pa.int64()),
        S.EVENT: pa.repeat(pa.scalar(event, pa.string()), len(user)),
        S.VALUE: pa.array(value, type=pa.float64()),
    })
    items = catalog.table
    if p.catalog is not None:
        also_buy, also_view = _related(rng, catalog, user, item, ts, p.catalog)
        items = items.append_column(ALSO_BUY, also_buy).append_column(ALSO_VIEW, also_view)
    return items, interactions


def write_shop(out_dir: str | Path, fmt: str = "parquet", **kwargs) -> tuple[str, str]:
    """Write generate_shop(**kwargs) to out_dir/items.<fmt> and out_dir/interactions.<fmt>.

    fmt: "parquet" or "csv". Parquet stores list columns as Arrow list<string>; CSV has no lists, so a list cell is
    joined into one string: category with " > " (the retail form), the others (description paragraphs, also_buy /
    also_view ids) with a space. Returns the (items, interactions) paths.
    """
    if fmt not in ("parquet", "csv"):
        raise UserError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    tables = _generate(**kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = str(out / f"items.{fmt}"), str(out / f"interactions.{fmt}")
    for table, path in zip(tables, paths, strict=True):
        if fmt == "parquet":  # the explicit schema keeps list<string> even where every list is empty
            lists = any(pa.types.is_list(field.type) for field in table.schema)
            table.to_pandas().to_parquet(path, index=False, **({"schema": table.schema} if lists else {}))
        else:
            _joined_lists(table).to_pandas().to_csv(path, index=False)
    return paths


def _joined_lists(table: pa.Table) -> pa.Table:
    """The table with each list<string> column joined into a string column (see write_shop), for CSV."""
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            joined = pc.binary_join(table[field.name], CSV_SEPARATORS.get(field.name, " "))
            table = table.set_column(i, field.name, pc.fill_null(joined, ""))
    return table
