"""Embedded demo data: customer-support queries of an online shop, labelled by intent.

:class:`IntentGenerator` writes realistic, varied queries from templates with slots
(products, order numbers, amounts, dates, cities), adds greetings, sign-offs, casing and
punctuation variation and seeded typos. Some phrasings are shared on purpose between
confusable intents (cancel/refund/return/subscription, late/track, damaged/wrong/warranty),
so a TF-IDF + linear model makes real mistakes.

A *progress* between 0.0 (start of the demo timeline) and 1.0 (end) drives gradual drift:

- the ``NEW_PRODUCTS`` line appears after ``NEW_PRODUCTS_FROM`` and grows to
  ``NEW_PRODUCT_SHARE_MAX`` of product mentions at 1.0;
- new slang phrasings appear after ``NEW_PHRASINGS_FROM`` and grow to
  ``NEW_PHRASING_SHARE_MAX`` of the queries of the intents that have them;
- the intent mix moves linearly from the start mix to the end mix: ``delivery_delay`` and
  ``damaged_item`` grow, ``store_hours`` shrinks.

>>> gen = IntentGenerator(seed=0)
>>> len(gen.balanced(2)) == 2 * len(INTENTS)
True
>>> round(sum(gen.intent_mix(progress=0.7).values()), 9)
1.0
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from itertools import accumulate
from numbers import Integral, Real
from typing import Callable

import numpy as np

INTENTS: tuple[str, ...] = (
    "track_order",
    "delivery_delay",
    "cancel_order",
    "subscription_cancel",
    "request_refund",
    "return_item",
    "change_address",
    "payment_failed",
    "update_payment_method",
    "reset_password",
    "delete_account",
    "apply_discount",
    "product_availability",
    "shipping_cost",
    "damaged_item",
    "wrong_item",
    "warranty_claim",
    "invoice_request",
    "contact_human",
    "store_hours",
)

PRODUCTS: tuple[str, ...] = (
    "wireless headphones", "running shoes", "coffee maker", "yoga mat", "phone case",
    "desk lamp", "backpack", "blender", "smartwatch", "winter jacket", "bluetooth speaker",
    "air fryer", "office chair", "electric toothbrush", "kettle", "laptop stand", "hoodie",
    "sneakers", "gaming mouse", "mechanical keyboard", "usb-c charger", "water bottle",
    "bed sheets", "vacuum cleaner", "hair dryer", "sunglasses", "e-reader", "tablet",
    "rice cooker", "dining table",
)
"""Products sold from the start of the timeline."""

NEW_PRODUCTS: tuple[str, ...] = (
    "Lumo smart ring", "Lumo earbuds", "Lumo home hub", "Lumo sleep tracker",
    "Lumo air purifier", "Lumo smart bulb", "Lumo robot vacuum", "Lumo fitness band",
)
"""The product line launched during the timeline (every name contains "Lumo")."""

NEW_PRODUCTS_FROM = 0.4
"""Progress after which ``NEW_PRODUCTS`` can appear (never at or before it)."""
NEW_PRODUCT_SHARE_MAX = 0.5
"""Share of product mentions that name a new product at progress 1.0."""
NEW_PHRASINGS_FROM = 0.5
"""Progress after which the new slang phrasings can appear (never at or before it)."""
NEW_PHRASING_SHARE_MAX = 0.4
"""Share of an intent's queries written in new slang at progress 1.0."""
AMBIGUOUS_SHARE = 0.15
"""Share of queries written with a phrasing that several intents share."""
TYPO_RATE = 0.12
"""Default share of queries that get one or two typos."""

# Intent mix at progress 0.0 and 1.0 (relative weights; normalised below).
_MIX_START = {
    "track_order": 11, "delivery_delay": 6, "cancel_order": 6, "subscription_cancel": 3,
    "request_refund": 6, "return_item": 6, "change_address": 4, "payment_failed": 5,
    "update_payment_method": 3, "reset_password": 6, "delete_account": 2,
    "apply_discount": 5, "product_availability": 6, "shipping_cost": 5, "damaged_item": 3,
    "wrong_item": 3, "warranty_claim": 3, "invoice_request": 3, "contact_human": 5,
    "store_hours": 9,
}
_MIX_END = {
    "track_order": 11, "delivery_delay": 15, "cancel_order": 5, "subscription_cancel": 4,
    "request_refund": 6, "return_item": 5, "change_address": 3, "payment_failed": 4,
    "update_payment_method": 2, "reset_password": 5, "delete_account": 2,
    "apply_discount": 4, "product_availability": 5, "shipping_cost": 4, "damaged_item": 9,
    "wrong_item": 4, "warranty_claim": 3, "invoice_request": 2, "contact_human": 5,
    "store_hours": 2,
}

# Templates: "{slot}" is filled per query; a trailing "?" marks a question.
_CORE: dict[str, list[str]] = {
    "track_order": [
        "where is my order", "where my order", "where's my package", "order status {order}",
        "track order {order}", "tracking {order}", "need tracking info",
        "Can you tell me where my order {order} is right now?",
        "I'd like to know the status of my order {order}", "has my {product} shipped yet?",
        "how do I track my package?", "is there a tracking number for order {order}?",
        "I ordered a {product} {date}, can you tell me where it is at the moment?",
        "Hello, could you please check the shipping status of my {product}? The order number is {order}.",
        "which carrier is delivering my order {order}?", "is my order out for delivery?",
        "what's the current location of my package to {city}?",
        "did my order {order} leave the warehouse yet?",
        "can I get the {carrier} tracking number for my {product}?",
    ],
    "delivery_delay": [
        "my order is late", "my package still hasn't arrived", "still waiting on my order {order}",
        "order {order} was supposed to arrive {date} and it's still not here",
        "why is my delivery taking so long?",
        "it's been {days} days and my {product} hasn't arrived",
        "the tracking hasn't updated in a week, is my order lost?",
        "Hi, I was promised delivery by {date} but nothing has come yet. What is going on?",
        "my parcel has been stuck in {city} for days",
        "the estimated delivery date keeps getting pushed back",
        "delivery is delayed again, this is really frustrating",
        "I think my package got lost in transit",
        "{carrier} says delivered but I never got my {product}",
        "my order was supposed to be here by now, when will it actually arrive?",
        "I needed the {product} for a birthday {date} and it is still not delivered",
        "late delivery",
    ],
    "cancel_order": [
        "cancel my order", "please cancel order {order}", "cancel order",
        "I want to cancel the {product} I just ordered",
        "can I still cancel my order before it ships?",
        "I ordered the wrong size by mistake, please cancel it", "how do I cancel an order?",
        "Hi, I placed an order {date} ({order}) and I would like to cancel it as soon as possible",
        "stop my order {order} from shipping",
        "I changed my mind about the {product}, can you cancel the order?",
        "is it too late to cancel {order}?",
        "I accidentally placed the same order twice, please cancel one",
        "don't ship my order, I want to cancel", "remove the {product} from my order {order}",
    ],
    "subscription_cancel": [
        "cancel my subscription", "how do I stop my monthly plan?", "I want to end my membership",
        "please stop charging me every month", "cancel the auto renewal on my account",
        "unsubscribe me from the {product} refill plan",
        "how can I cancel my premium membership before it renews on {date}?",
        "I don't want to be billed for the subscription anymore",
        "stop my subscribe and save deliveries",
        "Hello, I signed up for the free trial and would like to cancel before I get charged.",
        "turn off recurring payments", "cancel my plus membership please",
        "I was charged {amount} for a renewal I didn't want, cancel it",
        "end subscription",
    ],
    "request_refund": [
        "I want a refund", "refund please", "how long does a refund take?",
        "I returned the {product} {date} but haven't got my money back yet",
        "can I get my money back for order {order}?", "please refund {amount} to my {card}",
        "when will I see the refund on my {card}?",
        "I was charged twice, I need a refund of {amount}",
        "the refund for {order} still hasn't shown up",
        "Hi, I'd like to request a full refund for my order {order}, the item did not meet my expectations.",
        "I cancelled my order, where is my refund?", "refund status for order {order}",
        "I want my money back", "can you refund the shipping fee?",
    ],
    "return_item": [
        "how do I return an item?", "I want to return my {product}", "return label please",
        "can I send back the {product} I ordered {date}?", "what is your return policy?",
        "the {product} doesn't fit, how do I return it?",
        "Can I return an item I bought in your {city} store?",
        "I need a return shipping label for order {order}", "is it free to send things back?",
        "how many days do I have to return the {product}?",
        "I'd like to exchange the {product} for a different size",
        "Hello, I would like to return part of my order {order}, could you send me the instructions?",
        "where do I drop off my return?", "send back item",
    ],
    "change_address": [
        "change my shipping address",
        "I need to update the delivery address for order {order}",
        "I moved to {city}, please update my address",
        "can I change the address after ordering?", "wrong address on my order",
        "please ship order {order} to {city} instead",
        "Hi, I made a typo in my street name, can you correct the address on my order?",
        "how do I edit my address in my account?",
        "can you deliver my {product} to my work address instead?", "update address",
        "I'm not home {date}, can you send my package to my neighbour's address?",
        "the address on order {order} is old, please fix it",
    ],
    "payment_failed": [
        "my payment didn't go through", "payment failed", "why was my card declined?",
        "I keep getting an error at checkout",
        "my {card} was declined but I have enough money",
        "the payment page says transaction failed",
        "I tried to pay {amount} and it didn't work", "checkout won't accept my card",
        "Hello, I've been trying to order a {product} but the payment keeps failing. Can you help?",
        "I was charged but the order didn't go through", "error processing payment",
        "why can't I pay with {card}?",
    ],
    "update_payment_method": [
        "update my card", "how do I change my payment method?", "I want to add a new credit card",
        "remove my old card from my account", "my card expired, how do I update it?",
        "can I switch to {card} for my subscription?", "please change the card on file",
        "where can I edit my billing details?",
        "I got a new {card} and need to update it on my account",
        "Hi, could you help me replace the payment method for my recurring orders? My old card was cancelled by my bank.",
        "set {card} as my default payment", "delete saved card",
    ],
    "reset_password": [
        "forgot my password", "reset password", "I can't log in",
        "the password reset email never arrived", "how do I change my password?",
        "my account is locked after too many attempts",
        "I'm not receiving the verification code", "the reset link says it has expired",
        "Hi, I have been trying to log into my account since {date} and it says my password is wrong. Could you help me reset it?",
        "login not working", "can't sign in to my account", "I need a new password",
    ],
    "delete_account": [
        "delete my account", "please close my account",
        "how do I delete my account and all my data?", "remove my personal data",
        "I want to deactivate my profile",
        "Hello, under GDPR I would like all of my personal information erased from your systems.",
        "stop sending me emails and delete my account", "close account permanently",
        "how can I remove my account?", "I no longer want an account with you",
        "erase my data",
    ],
    "apply_discount": [
        "my promo code isn't working", "how do I use a discount code?",
        "the code {code} says invalid", "can I apply a coupon to an order I already placed?",
        "I forgot to add my discount code to order {order}",
        "where do I enter the voucher?", "is there a student discount?",
        "the {code} code didn't take {percent} off", "do you have any promo codes right now?",
        "Hi, I received a {percent} off code in my email but it won't apply at checkout. Can you help?",
        "coupon not applied", "can I use two discount codes?",
    ],
    "product_availability": [
        "is the {product} in stock?", "when will the {product} be back in stock?",
        "do you have the {product} in size {size}?", "is the {product} available in {color}?",
        "is the {product} available at your {city} store?", "out of stock?",
        "will you restock the {product}?", "can I preorder the {product}?",
        "Hello, I've been waiting for the {product} to be available again. Do you know when it will be restocked?",
        "do you sell the {product}?", "how many {product} do you have left?",
        "notify me when the {product} is back",
    ],
    "shipping_cost": [
        "how much is shipping?", "shipping cost to {city}", "do you offer free shipping?",
        "what's the minimum order for free delivery?", "how much does express delivery cost?",
        "why was I charged {amount} for shipping?", "do you ship to {country} and how much?",
        "shipping fees?", "is shipping free for members?",
        "Hi, before I order, could you tell me how much it costs to ship a {product} to {city}?",
        "how much is next day delivery?", "what are your delivery charges?",
        "how long does shipping take to {city}?",
    ],
    "damaged_item": [
        "my item arrived damaged", "the {product} is broken", "package came crushed",
        "the {product} arrived with a crack",
        "box was damaged and the {product} inside is scratched",
        "received a broken {product} in order {order}",
        "the screen of my {product} was smashed on arrival",
        "Hello, my {product} arrived today but it was badly damaged in transit. What should I do?",
        "item damaged in shipping, need a replacement",
        "the {product} doesn't turn on, it looks like it was dropped",
        "parts are missing and the box was torn open",
        "the glass was shattered when I opened the parcel",
    ],
    "wrong_item": [
        "I received the wrong item", "this isn't what I ordered",
        "you sent me a {product} instead of a {product2}", "wrong size delivered",
        "got the wrong color", "my order {order} contains someone else's items",
        "the package had a {product} but I ordered a {product2}",
        "Hi, I opened my order {order} and it's the wrong product. Please send the right one.",
        "received the wrong item, how do I exchange it?", "only half of my order arrived",
        "the item doesn't match the picture on the website", "I got someone else's order",
    ],
    "warranty_claim": [
        "my {product} stopped working", "is my {product} still under warranty?",
        "how do I make a warranty claim?", "the {product} broke after {months} months",
        "I bought a {product} last year and it died, can I get it repaired?",
        "the warranty covers this right?",
        "Hello, my {product} purchased on {date} has developed a fault. I would like to claim under the warranty.",
        "how long is the warranty on the {product}?",
        "{product} not charging anymore, still under guarantee?",
        "defective {product}, need repair or replacement", "what does the warranty cover?",
        "do you repair a broken {product}?",
    ],
    "invoice_request": [
        "I need an invoice", "can you send me the invoice for order {order}?",
        "where can I download my receipt?", "I need a VAT invoice for my company",
        "please email me a receipt for {amount}", "the invoice has the wrong company name",
        "can I get an itemized receipt?",
        "Hello, for my expense report I need a copy of the invoice for my {product} order from {date}.",
        "invoice with my business address please",
        "I didn't get a receipt for my purchase", "where are my invoices in my account?",
        "tax invoice",
    ],
    "contact_human": [
        "talk to a human", "I want to speak to a real person", "agent please",
        "can I call customer service?", "what is your phone number?",
        "this bot isn't helping, get me a person", "connect me to a representative",
        "Hello, I have a complicated problem with my order {order} and I'd like to speak to someone on the phone.",
        "is there a live chat with an agent?", "I want to talk to a manager",
        "customer support email?", "human",
    ],
    "store_hours": [
        "what are your opening hours?", "when does the {city} store open?",
        "are you open on {weekday}?", "what time do you close today?", "store hours",
        "are you open on public holidays?", "is the {city} shop open on sundays?",
        "Hi, I'd like to pick up my order in person; what time does your {city} store close on {weekday}?",
        "opening times for the weekend?", "how late is the store open?",
        "when is customer service available?", "holiday opening hours?",
    ],
}

# New phrasings (slang) that appear only after NEW_PHRASINGS_FROM.
_SLANG: dict[str, list[str]] = {
    "track_order": [
        "wya package {order}", "any updates on my drop {order}?", "where's my stuff at",
        "lmk where my {product} is rn", "yo send me the tracking for my haul",
    ],
    "delivery_delay": [
        "package is ghosting me fr", "bruh my order is taking forever",
        "my {product} is stuck in limbo smh", "it's been {days} days, this delivery is mid",
        "ngl shipping is slow af, still no {order}",
    ],
    "cancel_order": [
        "nvm cancel my order", "yeet order {order} pls, don't want it anymore",
        "scrap my order lol", "changed my mind, kill order {order}",
    ],
    "subscription_cancel": [
        "how do i unsub from this", "done with the membership, cancel it fr",
        "kill my sub pls", "not renewing, stop the monthly charges smh",
    ],
    "request_refund": [
        "where's my refund at", "need my money back asap no cap",
        "refund me pls, {amount} gone for nothing", "still no refund, this is sus",
    ],
    "return_item": [
        "how do i send this back lol", "{product} is a flop, wanna return it",
        "returning this, where's the label", "ngl the {product} is not it, how do i return",
    ],
    "change_address": [
        "moved, pls update my addy", "ship it to my new crib in {city}", "wrong addy on {order}, fix it",
    ],
    "payment_failed": [
        "checkout keeps glitching, card won't go thru", "payment bugging out rn",
        "bruh my {card} got declined again",
    ],
    "update_payment_method": [
        "new card who dis, how do i update it", "swap my card on file pls",
        "wanna use {card} now, how do i switch",
    ],
    "reset_password": [
        "locked out of my acc help", "forgor my password lol", "can't log in, reset link is busted",
    ],
    "delete_account": [
        "nuke my account pls", "delete my acc, i'm done", "wipe all my data fr",
    ],
    "apply_discount": [
        "promo code {code} is busted", "any discount codes? broke rn", "coupon not working smh",
    ],
    "product_availability": [
        "{product} restock when??", "is the {product} still a thing or sold out",
        "need the {product} in {color}, got any",
    ],
    "shipping_cost": [
        "shipping fee is wild, why so much", "free shipping or nah?", "how much to ship to {city} fr",
    ],
    "damaged_item": [
        "{product} showed up busted", "package came all smashed up smh",
        "my {product} arrived cracked, not cool", "bruh the box was wrecked and so is the {product}",
    ],
    "wrong_item": [
        "y'all sent me the wrong thing lol", "ordered a {product2} but got a {product}??",
        "this ain't what i ordered",
    ],
    "warranty_claim": [
        "my {product} just died, warranty pls", "{product} bricked itself after {months} months",
        "is the warranty legit, my {product} is toast",
    ],
    "invoice_request": [
        "need the receipt for work, send pls", "gimme a receipt for my {product}",
    ],
    "contact_human": [
        "bro just get me a real human", "bot is useless, agent pls", "lemme talk to an actual person",
    ],
    "store_hours": [
        "store open rn?", "what time y'all close on {weekday}",
    ],
}

# Phrasings that several intents share on purpose: the label is genuinely ambiguous.
_SHARED: list[tuple[tuple[str, ...], list[str]]] = [
    (("cancel_order", "subscription_cancel", "request_refund", "return_item"), [
        "I don't want this anymore", "cancel it and give me my money back",
        "how do I cancel and get a refund?", "can you cancel {order} and refund me?",
        "I was charged {amount}, please stop it and refund me",
    ]),
    (("delivery_delay", "track_order"), [
        "where is my order {order}, it should have arrived by now",
        "when is my package arriving?", "any update on my delivery?",
        "my order {order} still says in transit", "when will my {product} arrive?",
    ]),
    (("damaged_item", "wrong_item", "warranty_claim", "return_item"), [
        "the {product} I received is not right", "problem with the {product} I got",
        "I need a replacement for my {product}", "the {product} isn't working properly",
    ]),
    (("payment_failed", "update_payment_method"), [
        "problem with my card", "my card isn't working on your site", "card issue",
    ]),
    (("reset_password", "delete_account"), [
        "I can't access my account anymore", "problem with my account",
    ]),
    (("contact_human", "store_hours"), [
        "how can I reach you?", "when can I talk to someone?",
    ]),
    (("apply_discount", "shipping_cost"), [
        "why is my total so high?", "can I get free shipping with a code?",
    ]),
    (("product_availability", "shipping_cost"), [
        "can you send the {product} to {city}?", "how soon can I get the {product}?",
    ]),
    (("invoice_request", "request_refund"), [
        "I need proof of the refund for order {order}",
    ]),
    (("change_address", "track_order"), [
        "my package is going to the wrong address",
    ]),
]

_GREETINGS = (
    "Hi", "Hello", "Hey", "Hi there", "Good morning", "Hello team", "Dear support", "Hey guys",
    "Good evening",
)
_GREETING_GLUE = (", ", " ", "! ", ", ")
_SIGNOFFS = (
    "thanks", "thank you", "thanks in advance", "cheers", "thx", "regards, {name}",
    "Best, {name}", "ty", "thank you so much", "kind regards",
)
_SIGNOFF_GLUE = (" ", ", ", ". ", " - ")
_CONTEXTS = (
    "I ordered a {product} {date}. ", "My order number is {order}. ",
    "I bought the {product} {date}. ", "Quick question. ", "I live in {city}. ",
)
_QUESTION_ENDS = ("?",) * 11 + ("",) * 6 + ("??",) * 2 + (" ?",)
_STATEMENT_ENDS = ("",) * 10 + (".",) * 7 + ("!",) * 2 + ("...",)
_GREETING_WORDS = ("hi", "hello", "hey", "dear")

_CITIES = (
    "Boston", "Chicago", "Denver", "Seattle", "Austin", "London", "Manchester", "Dublin",
    "Berlin", "Toronto", "Sydney", "Paris", "Madrid", "Amsterdam", "Portland", "Leeds",
)
_COUNTRIES = ("Canada", "Germany", "France", "Ireland", "Mexico", "Australia", "Spain", "Norway")
_CARRIERS = ("UPS", "DHL", "FedEx", "USPS", "the courier", "Royal Mail")
_CARDS = ("visa", "mastercard", "amex", "paypal", "debit card", "credit card", "apple pay")
_CODES = ("SAVE10", "WELCOME15", "SPRING20", "FREESHIP", "VIP25", "SUMMER5", "BF2024")
_PERCENTS = ("10%", "15%", "20%", "25%", "20 percent", "half")
_SIZES = ("S", "M", "L", "XL", "10", "42", "medium", "large")
_COLORS = ("black", "white", "navy", "red", "green", "beige", "grey", "pink")
_WEEKDAYS = ("monday", "tuesday", "friday", "saturday", "sunday", "Saturday", "Sunday")
_NAMES = ("Anna", "Tom", "Priya", "Luis", "Mei", "Sam", "Olga", "Jamal", "Chris", "Fatima")
_NUMBERS = ("3", "4", "5", "7", "10", "12", "two", "three", "ten")
_DATES = (
    "yesterday", "last week", "last monday", "on the 3rd", "on March 12", "on 12/03",
    "two weeks ago", "on Friday", "a few days ago", "on the 21st", "this morning",
)

_SLOT = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[^\W\d_]{3,}")

# A compiled template: (parts, is_question, starts_with_greeting); parts alternate
# literal text and slot names, starting and ending with a literal.
_Template = tuple[tuple[str, ...], bool, bool]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled query."""

    text: str
    label: str


class IntentGenerator:
    """Seeded source of labelled support queries that drift with *progress* (0.0 to 1.0).

    The same seed and the same sequence of calls give the same examples. Queries get one
    or two typos (adjacent swap, dropped or doubled letter) with probability *typo_rate*;
    typos come from their own random stream, so *typo_rate* changes nothing else.
    """

    def __init__(self, *, seed: int = 0, typo_rate: float = TYPO_RATE) -> None:
        if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
        _check_fraction("typo_rate", typo_rate)
        self.seed = int(seed)
        self.typo_rate = float(typo_rate)
        main, typo = np.random.SeedSequence(self.seed).spawn(2)
        self._rng = random.Random(int(main.generate_state(1, np.uint64)[0]))
        self._typo_rng = random.Random(int(typo.generate_state(1, np.uint64)[0]))

    def intent_mix(self, *, progress: float) -> dict[str, float]:
        """Probability of each intent at a point of the timeline (progress 0.0 = start, 1.0 = end); sums to 1.

        >>> mix = IntentGenerator().intent_mix(progress=1.0)
        >>> mix["delivery_delay"] > IntentGenerator().intent_mix(progress=0.0)["delivery_delay"]
        True
        """
        p = _check_fraction("progress", progress)
        return {i: (1.0 - p) * _START[i] + p * _END[i] for i in INTENTS}

    def sample(self, n: int, *, progress: float = 0.0) -> list[Example]:
        """n queries drawn from intent_mix(progress=progress), with drift applied for that progress."""
        n = _check_count("n", n)
        mix = self.intent_mix(progress=progress)
        labels = self._rng.choices(INTENTS, cum_weights=list(accumulate(mix.values())), k=n)
        return self._render(labels, float(progress))

    def balanced(self, per_intent: int, *, progress: float = 0.0) -> list[Example]:
        """per_intent examples of every intent (for seeding a first labelled set), in shuffled order."""
        per_intent = _check_count("per_intent", per_intent)
        p = _check_fraction("progress", progress)
        labels = [i for i in INTENTS for _ in range(per_intent)]
        self._rng.shuffle(labels)
        return self._render(labels, p)

    # -- rendering ---------------------------------------------------------------------

    def _render(self, labels: list[str], progress: float) -> list[Example]:
        """One query per label: template, slots, end punctuation, extras, casing, typos."""
        rng = self._rng
        rand = rng.random
        choice = rng.choice
        new_product_share = NEW_PRODUCT_SHARE_MAX * _ramp(progress, NEW_PRODUCTS_FROM)
        slang_share = NEW_PHRASING_SHARE_MAX * _ramp(progress, NEW_PHRASINGS_FROM)
        slots = self._slots(new_product_share)
        typo_rng = self._typo_rng
        typo_rand = typo_rng.random
        typo_rate = self.typo_rate
        out = []
        for label in labels:
            u = rand()
            if u < slang_share and label in _SLANG_T:
                template = choice(_SLANG_T[label])
            elif slang_share <= u < slang_share + AMBIGUOUS_SHARE:
                template = choice(_SHARED_T[label])
            else:
                template = choice(_CORE_T[label])
            parts, is_question, has_greeting = template
            text = _fill(parts, slots)
            text += choice(_QUESTION_ENDS if is_question else _STATEMENT_ENDS)
            if rand() < 0.07:
                text = _fill(choice(_CONTEXT_T), slots) + text
            if not has_greeting and rand() < 0.18:
                text = choice(_GREETINGS) + choice(_GREETING_GLUE) + text
            if rand() < 0.14:
                glue = " " if text[-1] in "?!." else choice(_SIGNOFF_GLUE)
                text = text + glue + _fill(choice(_SIGNOFF_T), slots)
            u = rand()
            if u < 0.35:
                text = text.lower()
                if rand() < 0.5:
                    text = text.replace("'", "")
            elif u < 0.43:
                text = text[0].upper() + text[1:]
            elif u < 0.45:
                text = text.upper()
            if typo_rand() < typo_rate:
                text = _add_typos(text, typo_rng)
            out.append(Example(text, label))
        return out

    def _slots(self, new_product_share: float) -> dict[str, Callable[[], str]]:
        rng = self._rng
        rand, choice, randrange = rng.random, rng.choice, rng.randrange

        def product() -> str:
            if new_product_share and rand() < new_product_share:
                return choice(NEW_PRODUCTS)
            return choice(PRODUCTS)

        def order() -> str:
            u, number = rand(), randrange(10000, 100000)
            if u < 0.6:
                return f"#{number}"
            if u < 0.85:
                return str(number)
            return f"ORD-{number}"

        def amount() -> str:
            value = randrange(5, 400) + choice((0.0, 0.99, 0.5, 0.49))
            u = rand()
            if u < 0.6:
                return f"${value:.2f}"
            if u < 0.8:
                return f"{value:.2f} dollars"
            return f"€{value:.0f}"

        return {
            "product": product,
            "product2": product,
            "order": order,
            "amount": amount,
            "date": lambda: choice(_DATES),
            "city": lambda: choice(_CITIES),
            "country": lambda: choice(_COUNTRIES),
            "carrier": lambda: choice(_CARRIERS),
            "card": lambda: choice(_CARDS),
            "code": lambda: choice(_CODES),
            "percent": lambda: choice(_PERCENTS),
            "size": lambda: choice(_SIZES),
            "color": lambda: choice(_COLORS),
            "weekday": lambda: choice(_WEEKDAYS),
            "name": lambda: choice(_NAMES),
            "days": lambda: choice(_NUMBERS),
            "months": lambda: choice(_NUMBERS),
        }


def _fill(parts: tuple[str, ...], slots: dict[str, Callable[[], str]]) -> str:
    if len(parts) == 1:
        return parts[0]
    out = [parts[0]]
    for k in range(1, len(parts), 2):
        out.append(slots[parts[k]]())
        out.append(parts[k + 1])
    return "".join(out)


def _add_typos(text: str, rng: random.Random) -> str:
    """One typo (80%) or two in words of 3+ letters: swap two adjacent letters, drop one or double one."""
    typed = text
    for _ in range(1 if rng.random() < 0.8 else 2):
        words = list(_WORD.finditer(typed))
        if not words:
            break
        word = rng.choice(words)
        k = rng.randrange(word.start(), word.end())
        kind = rng.random()
        if kind < 0.4 and k + 1 < word.end() and typed[k] != typed[k + 1]:
            typed = typed[:k] + typed[k + 1] + typed[k] + typed[k + 2 :]
        elif kind < 0.7:
            typed = typed[:k] + typed[k + 1 :]
        else:
            typed = typed[: k + 1] + typed[k:]
    if typed == text and words:  # the two edits undid each other: double a letter
        k = words[0].start()
        typed = text[: k + 1] + text[k:]
    return typed


def _ramp(progress: float, start: float) -> float:
    """0.0 up to *start*, then rising linearly to 1.0 at progress 1.0."""
    return max(0.0, (progress - start) / (1.0 - start))


def _check_fraction(name: str, value: float) -> float:
    if not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number from 0.0 to 1.0, got {value!r}")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _compile(template: str) -> _Template:
    is_question = template.endswith("?")
    body = template.rstrip("?.")
    has_greeting = body.split(" ", 1)[0].rstrip(",").lower() in _GREETING_WORDS
    return tuple(_SLOT.split(body)), is_question, has_greeting


def _normalise(weights: dict[str, float]) -> dict[str, float]:
    total = math.fsum(weights.values())
    return {i: weights[i] / total for i in INTENTS}


_START = _normalise(_MIX_START)
_END = _normalise(_MIX_END)
_CORE_T = {i: [_compile(t) for t in _CORE[i]] for i in INTENTS}
_SLANG_T = {i: [_compile(t) for t in ts] for i, ts in _SLANG.items()}
_SHARED_T: dict[str, list[_Template]] = {i: [] for i in INTENTS}
for _intents, _templates in _SHARED:
    for _i in _intents:
        _SHARED_T[_i].extend(_compile(t) for t in _templates)
_CONTEXT_T = [_compile(t)[0] for t in _CONTEXTS]
_SIGNOFF_T = [_compile(t)[0] for t in _SIGNOFFS]
