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

Everything is vectorised with numpy/pyarrow (loops only over a few modes and rejection rounds): 10^6 items with
10^7 interactions take about 30 s and 3 GB peak RSS.
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

__all__ = ["END_TS", "EVENTS", "generate_shop", "write_shop"]

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


def _brands(rng: np.random.Generator, n_items: int, n_departments: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Brand names (B,), department of each brand (B,), price multiplier of each brand (B,)."""
    combos = [h + t + s for s in BRAND_SUFFIXES for h in BRAND_HEADS for t in BRAND_TAILS]
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
    frame: pd.DataFrame


def _make_items(rng: np.random.Generator, n_items: int, t_start: int, t_end: int) -> _Catalog:
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

    # first_seen: catalog items before the span, others spread over it, a late batch near its end
    span = t_end - t_start
    kind = rng.choice(3, size=n, p=[CATALOG_SHARE, 1.0 - CATALOG_SHARE - LATE_SHARE, LATE_SHARE])
    late_start = t_end - max(int(span * LATE_WINDOW), DAY)
    lo = np.select([kind == 0, kind == 1], [t_start - 2 * 365 * DAY, t_start], late_start)
    hi = np.select([kind == 0, kind == 1], [t_start, late_start], t_end - 3600)
    first_seen = (lo + rng.random(n) * (hi - lo)).astype(np.int64)

    rank = rng.permutation(n)
    weight = (rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    tail = np.flatnonzero(rank >= int(0.3 * n))
    weight[rng.choice(tail, size=min(len(tail), int(round(COLD_SHARE * n))), replace=False)] = 0.0

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

    frame = pa.table({
        S.ITEM_ID: _ids("SKU", n),
        S.TITLE: title,
        S.DESCRIPTION: description,
        S.CATEGORY: pc.take(T.paths, leaf),
        S.BRAND: pc.take(brand_names, brand),
        S.PRICE: pa.array(price, type=pa.float64()),
        S.FIRST_SEEN: pa.array(first_seen, type=pa.int64()),
    }).to_pandas()
    style_attr = np.where(_TITLE_HAS_STYLE[template], n_materials + style, -1)
    return _Catalog(leaf=leaf, material=material, style=style_attr, consumable=consumable, first_seen=first_seen,
                    weight=weight, quality=rng.normal(0.0, 0.5, n), frame=frame)


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


@dataclass
class _Users:
    """Per-user arrays, all (n_users,) unless noted."""

    count: np.ndarray  # rows of the user (>= 1)
    prefs: np.ndarray  # (n_users, 3) preferred leaves; only the first n_prefs of a row are used
    n_prefs: np.ndarray
    attribute: np.ndarray  # preferred attribute id (material id, or n_materials + style id)
    start: np.ndarray  # active period [start, end] in unix seconds
    end: np.ndarray


def _make_users(rng: np.random.Generator, n_users: int, n_rows: int, leaf_weight: np.ndarray, t_start: int,
                t_end: int) -> _Users:
    T = _tables()
    # heavy-tailed activity: everyone has one row, the rest is spread by log-normal weights (capped)
    activity = rng.lognormal(0.0, 1.8, n_users)
    extra = rng.poisson(max(n_rows - n_users, 0) * activity / activity.sum())
    cap = max(20 * n_rows // n_users, min(1000, max(n_rows // 40, 50)))
    count = 1 + np.minimum(extra, cap - 1)
    # tastes: 1-3 leaves (more popular leaves are preferred more often), one attribute word of the first leaf
    prefs = rng.choice(len(LEAVES), size=(n_users, 3), p=leaf_weight / leaf_weight.sum())
    n_prefs = rng.choice([1, 2, 3], size=n_users, p=[0.4, 0.35, 0.25])
    first = prefs[:, 0]
    style = len(T.materials) + _pick(T.leaf_styles, first, rng.random(n_users))
    attribute = np.where(rng.random(n_users) < 0.45, style, _pick(T.leaf_materials, first, rng.random(n_users)))
    # active period around a random centre; heavier users stay longer
    span = t_end - 1 - t_start
    centre = t_start + rng.random(n_users) * span
    half = span * np.minimum(0.6, (0.01 + 0.03 * np.sqrt(count)) * rng.gamma(2.0, 0.5, n_users))
    half = np.maximum(half, DAY)
    start = np.clip(centre - half, t_start, t_end - 1).astype(np.int64)
    end = np.clip(centre + half, t_start, t_end - 1).astype(np.int64)
    return _Users(count=count, prefs=prefs, n_prefs=n_prefs, attribute=attribute, start=start, end=end)


class _ItemChooser:
    """Vectorised item choice for interaction rows, by mode (see MODE_SHARES)."""

    def __init__(self, catalog: _Catalog, n_attributes: int):
        n = len(catalog.leaf)
        n_leaves = len(LEAVES)
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


def _make_interactions(rng: np.random.Generator, catalog: _Catalog, users: _Users, event: str, t_end: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows as arrays (user, item, timestamp, value), each (n_rows,), sorted by (timestamp, user)."""
    n_attributes = len(_tables().materials) + len(_tables().styles)
    chooser = _ItemChooser(catalog, n_attributes)
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
        leaf_match = (users.prefs[user] == catalog.leaf[item][:, None])
        leaf_match = (leaf_match & (np.arange(3) < users.n_prefs[user][:, None])).any(axis=1)
        score = (3.0 + 1.0 * leaf_match + 0.8 * chooser.has_attribute(item, users.attribute[user])
                 + catalog.quality[item] + rng.normal(0.0, 0.9, len(user)))
        value = np.clip(np.round(score), 1, 5)
    else:
        earlier = offset + (rng.random(n) * position).astype(np.int64)
        accept = np.where(catalog.consumable[item[earlier]], REPEAT_ACCEPT[1], REPEAT_ACCEPT[0])
        repeat = (position > 0) & (rng.random(n) < REPEAT_SHARE * accept)
        item = np.where(repeat, item[earlier], item)
        value = np.minimum(rng.geometric(0.7, n), 12).astype(np.float64)
    order = np.lexsort((user, ts))
    return user[order], item[order], ts[order], value[order]


def _first_occurrence(key: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of each key value. key: (n,)."""
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def generate_shop(n_items: int = 5000, interactions_per_item: float = 10.0, n_users: int | None = None,
                  days: int = 365, event: str = "purchase", seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic long-tail shop; the same arguments always give equal frames.

    Args:
        n_items: catalog size.
        interactions_per_item: target average rows per catalog item (the total is about n_items times this; in
            "rating" mode repeated (user, item) pairs are dropped, so slightly fewer).
        n_users: number of users, each with at least one row; defaults to about n_items * interactions_per_item / 8.
        days: length of the time span, which ends at END_TS (2024-01-01 00:00 UTC).
        event: "purchase" (value = quantity >= 1, repeat purchases happen) or "rating" (value = rating 1..5,
            higher when the item matches the user's categories and attribute word).
        seed: random seed.

    Returns:
        (items, interactions):
        items, (n_items, 7): item_id str (unique, "SKU0000042"), title str, description str (several sentences),
        category str ("Home > Kitchen > Cookware"), brand str, price float64, first_seen_ts int64 (unix seconds;
        some before the span, some late in it).
        interactions, (about n_items * interactions_per_item, 5), sorted by timestamp: user_id str ("U0000042"),
        item_id str, timestamp int64 (unix seconds, >= the item's first_seen_ts), event str, value float64.
    """
    if event not in EVENTS:
        raise UserError(f"event must be one of {', '.join(EVENTS)}, got {event!r}")
    if n_items < 1 or days < 1 or not interactions_per_item > 0:
        raise UserError(f"need n_items >= 1, days >= 1 and interactions_per_item > 0; got n_items={n_items}, "
                        f"days={days}, interactions_per_item={interactions_per_item}")
    n_rows = max(1, int(round(n_items * interactions_per_item)))
    if n_users is None:
        n_users = max(1, int(round(n_rows / 8)))
    if n_users < 1:
        raise UserError(f"n_users must be >= 1, got {n_users}")
    rng = np.random.default_rng(seed)
    t_end, t_start = END_TS, END_TS - days * DAY
    catalog = _make_items(rng, n_items, t_start, t_end)
    leaf_weight = np.bincount(catalog.leaf, weights=catalog.weight, minlength=len(LEAVES))
    users = _make_users(rng, n_users, n_rows, leaf_weight, t_start, t_end)
    user, item, ts, value = _make_interactions(rng, catalog, users, event, t_end)
    interactions = pa.table({
        S.USER_ID: pc.take(_ids("U", n_users), pa.array(user)),
        S.ITEM_ID: pc.take(pa.array(catalog.frame[S.ITEM_ID].array), pa.array(item)),
        S.TIMESTAMP: pa.array(ts, type=pa.int64()),
        S.EVENT: pa.repeat(pa.scalar(event, pa.string()), len(user)),
        S.VALUE: pa.array(value, type=pa.float64()),
    }).to_pandas()
    return catalog.frame, interactions


def write_shop(out_dir: str | Path, fmt: str = "parquet", **kwargs) -> tuple[str, str]:
    """Write generate_shop(**kwargs) to out_dir/items.<fmt> and out_dir/interactions.<fmt>.

    fmt: "parquet" or "csv". Returns the (items, interactions) paths.
    """
    if fmt not in ("parquet", "csv"):
        raise UserError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    items, interactions = generate_shop(**kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = str(out / f"items.{fmt}"), str(out / f"interactions.{fmt}")
    for frame, path in zip((items, interactions), paths, strict=True):
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    return paths
