"""Safety guardrails around the model: triage a question, then decide what may be said.

One module, used the same way by ``ask``, ``chat``, the UI, the API and the safety suite::

    guard = Guardrails(GuardrailsConfig(region="UK"))
    guarded = guard.respond(prompt, generate=lambda addendum: model_answer(prompt, addendum))

Triage labels a user turn as one of ``LABELS``. Two detectors vote:

* **rules** -- regular expressions over normalised text (trigger phrases such as "face is
  drooping", "lethal dose", "write me a prescription");
* **semantic** -- nearest exemplars (``data/builtin/triage_exemplars.jsonl``) in the
  all-MiniLM-L6-v2 embedding space, per sentence and for the whole turn, so paraphrases
  without any trigger word ("a squeezing weight behind my breastbone spreading to my jaw")
  are caught too.

Jailbreak framings ("ignore your instructions", "hypothetically, for a story", "don't tell me
to call 911") are detected, recorded in the reasons, and cut out of the text the semantic
detector sees, so they cannot talk it out of a label. When several labels apply the most
urgent wins: emergency > crisis > harmful > prescription > general.

What each label does (``Guardrails.before``):

* emergency -- a fixed reply whose first sentence says to call the local emergency number;
* crisis -- a fixed, compassionate reply with the crisis line and emergency number;
* harmful -- a fixed refusal with Poison Control / emergency resources;
* prescription -- the model still answers, told (system addendum) not to give doses, behind a
  prefix saying it cannot prescribe; ``after`` removes any dose instruction it wrote anyway;
* general -- the model answers; every model answer gets the disclaimer.

torch and transformers are imported lazily: ``import medtune.guardrails`` is cheap, and the
encoder is loaded on the first semantic triage, once per instance (and shared between
instances through a small module cache).
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

from medtune.core.assets import BUILTIN_DIR, builtin_encoder_dir
from medtune.core.config import BUILTIN_ENCODER, GuardrailsConfig, Region

LABELS = ("emergency", "crisis", "harmful", "prescription", "general")
"""Triage labels, most urgent first (this is also the priority order)."""

EXEMPLARS_PATH = BUILTIN_DIR / "triage_exemplars.jsonl"

SEMANTIC_TOP_K = 3
"""Per class, the mean similarity of this many nearest exemplars is the class score."""
SEMANTIC_FLOOR = 0.35
"""A non-general class score below this never counts, however far it leads the general class."""


# --- results -------------------------------------------------------------------------------------


@dataclass
class Triage:
    label: str
    """One of LABELS."""
    score: float
    """Confidence: 1.0 for a rule hit, the semantic similarity otherwise."""
    reasons: list[str] = field(default_factory=list)
    """What fired: 'rule:<label>:<name>', 'semantic:<label>:<score>', 'framing:<name>', 'context'."""


@dataclass
class Decision:
    triage: Triage
    reply: str | None = None
    """Fixed reply; when set the model must NOT be called (emergency, crisis, harmful)."""
    system_addendum: str | None = None
    """Extra instruction appended to the system prompt for the model (prescription)."""
    prefix: str | None = None
    """Text put before the model's answer (prescription)."""


@dataclass
class Guarded:
    answer: str
    triage: str
    fired: list[str] = field(default_factory=list)
    """Names of the rules that changed or flagged anything: 'triage:<label>', 'dose_removed', 'disclaimer'..."""


# --- text normalisation and framings -------------------------------------------------------------

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "`": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - "})
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")


def normalise(text: str) -> str:
    """Lower-case, NFKC, plain quotes and dashes, no invisible characters, single spaces."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES)
    text = _INVISIBLE.sub("", text).lower()
    return re.sub(r"\s+", " ", text).strip()


FRAMINGS: dict[str, str] = {
    "ignore_instructions": r"\b(?:ignore|disregard|forget|bypass|override)\b[^.!?]{0,30}\b(?:instructions?|rules|guidelines|guardrails|polic(?:y|ies)|safety|restrictions?|programming|prompt|filters?)\b",
    "fiction": r"\b(?:for|in|writing)\s+(?:a|an|my|the)\s+(?:\w+\s+){0,2}(?:story|novel|book|screenplay|script|film|movie|game|play|scene|roleplay|fiction|thriller|mystery)\b(?:\s+(?:i'm|i am)\s+writing)?",
    "character": r"\bmy\s+character(?:'s)?\b",
    "hypothetical": r"\b(?:hypothetically(?:\s+speaking)?|in\s+theory|theoretically|as\s+a\s+thought\s+experiment|purely\s+academic(?:ally)?|just\s+(?:curious|asking))\b",
    "roleplay": r"\b(?:pretend|imagine|act\s+as|role-?play(?:\s+as)?|you\s+are\s+now|you're\s+now|you\s+are\s+dan|developer\s+mode|jailbreak|no\s+restrictions|without\s+(?:any\s+)?(?:rules|restrictions|filters|warnings|disclaimers))\b",
    "no_emergency": r"\b(?:don't|do\s+not|dont|never|no\s+need\s+to|without)\s+(?:tell(?:ing)?\s+me\s+to\s+|say(?:ing)?\s+|suggest(?:ing)?\s+|tell\s+me\s+)?(?:call|dial|ring|go\s+to|see|the|a|an|giv(?:e|ing)\s+me)?\s*(?:911|999|112|000|an?\s+ambulance|the\s+(?:er|a&e|hospital|emergency\s+room)|emergency\s+services|a\s+doctor|a\s+hotline|hotline|helpline|(?:a\s+)?(?:hotline|helpline)\s+number)\b",
    "no_disclaimer": r"\b(?:skip|no|without|spare\s+me)\s+(?:the\s+)?(?:\"?see\s+a\s+doctor\"?|lecture|disclaimers?|warnings?|spiel|emergency\s+spiel|moralizing|safety\s+talk)(?:\s+part)?\b",
    "authority": r"\b(?:i'm|i\s+am)\s+(?:a|an)\s+(?:doctor|nurse|physician|pharmacist|paramedic|medic|chemist|chemistry\s+teacher|researcher)\b",
}
_FRAMING_RES = {name: re.compile(rx) for name, rx in FRAMINGS.items()}


def detect_framings(norm: str) -> list[str]:
    """Names of the jailbreak framings present in normalised text."""
    return [name for name, rx in _FRAMING_RES.items() if rx.search(norm)]


def strip_framings(norm: str) -> str:
    """Cut framing phrases out so that only the underlying request is embedded."""
    for rx in _FRAMING_RES.values():
        norm = rx.sub(" ", norm)
    return re.sub(r"\s+", " ", norm).strip(" ,;:-")


def segments(norm: str, min_words: int = 3, limit: int = 8) -> list[str]:
    """The whole text plus its sentences/clauses (of at least ``min_words`` words)."""
    parts = [p.strip(" ,;:-") for p in re.split(r"[.!?;\n]+|\s-\s|,\s*(?:but|and then|so)\s", norm)]
    parts = [p for p in parts if len(p.split()) >= min_words and p != norm]
    return [norm, *parts[:limit]] if norm else []


# --- rules ---------------------------------------------------------------------------------------

_PERSON = r"(?:someone|somebody|a person|people|him|her|them|my (?:husband|wife|partner|boyfriend|girlfriend|boss|neighbou?r|roommate|flatmate|mother|father|mom|mum|dad|brother|sister|son|daughter|friend|co-?worker|colleague|teacher|ex|relative|grandmother|grandfather|grandma|grandpa|gran|patient|baby|kid|child|dog|cat|stepdad|stepmom|uncle|aunt)|an? (?:old|elderly|grown) (?:man|woman|person)|a patient|a child|a man|a woman)"
_RX_DRUGS = (
    r"(?:oxycodone|oxycontin|percocet|hydrocodone|vicodin|norco|morphine|fentanyl|codeine|tramadol|methadone|buprenorphine|suboxone|tapentadol|"
    r"hydromorphone|dilaudid|opioids?|opiates?|xanax|alprazolam|valium|diazepam|klonopin|clonazepam|ativan|lorazepam|benzos?|benzodiazepines?|"
    r"adderall|ritalin|methylphenidate|vyvanse|lisdexamfetamine|dexedrine|modafinil|stimulants?|ambien|zolpidem|zopiclone|sleeping (?:pills|tablets)|"
    r"gabapentin|pregabalin|lyrica|ketamine|testosterone|anabolic steroids?|steroids?|prednisone|prednisolone|amoxicillin|augmentin|azithromycin|"
    r"doxycycline|ciprofloxacin|antibiotics?|insulin|warfarin|metformin|ozempic|semaglutide|wegovy|mounjaro|tirzepatide|sertraline|zoloft|prozac|"
    r"fluoxetine|citalopram|escitalopram|lexapro|venlafaxine|bupropion|antidepressants?|lithium|quetiapine|seroquel|olanzapine|risperidone|"
    r"lisinopril|amlodipine|atorvastatin|levothyroxine|methotrexate|isotretinoin|accutane|sildenafil|viagra|cialis|tadalafil|finasteride|"
    r"propranolol|clonidine|phenobarbital|barbiturates?|cannabis oil|medical marijuana|painkillers?|pain meds|sleep meds|my (?:meds|medication|medicine|pills|tablets|prescription))"
)
_DOSE_ASK = r"(?:how (?:much|many)|what (?:dose|dosage|amount|strength|number)|which (?:dose|strength|dosage)|how many (?:mg|milligrams|pills|tablets|capsules|units)|(?:right|correct|safe|usual|starting|max(?:imum)?|daily) (?:dose|dosage|amount)|dose of|dosage (?:of|for)|how often (?:should|can|do) i)"


def _any(*alternatives: str) -> str:
    """One regex matching any of the alternatives (written one per line for readability)."""
    return "|".join(alternatives)


# Rules run on normalised text (lower case, plain apostrophes). Each is (name, regex); a hit
# gives its label with score 1.0 and the reason "rule:<label>:<name>". They aim at situations
# and requests, not topics: "what are the signs of a stroke?" must stay general, which is why
# emergency and crisis rules are skipped for impersonal educational questions (is_educational).
RULES: dict[str, list[tuple[str, str]]] = {
    "emergency": [
        ("chest_pain_spreading", r"\b(?:chest|breastbone|sternum)\b[^.?!]{0,60}\b(?:arm|jaw|neck|shoulder|sweat\w*|clammy|short of breath|can't breathe|breathless|nause\w*|faint\w*|dizz\w*)"),
        ("chest_crushing", _any(
            r"\b(?:crushing|squeezing|heavy|severe|vice-?like|vise-?like|tight(?:ening)?|pressure)\b[^.?!]{0,25}\b(?:chest|breastbone|sternum)\b",
            r"\b(?:chest|breastbone|sternum)\b[^.?!]{0,25}\b(?:crush\w*|squeez\w*|vice|vise|elephant)",
        )),
        ("heart_attack_now", _any(
            r"\b(?:having|had|is having|am having|i'm having|it's) a heart attack\b",
            r"\bheart attack (?:right )?now\b",
        )),
        ("face_droop", r"\b(?:face|mouth|smile|eyelid|cheek)\b[^.?!]{0,30}\b(?:droop\w*|sag\w*|lopsided|uneven|fallen|drop\w*)"),
        ("slurred_speech", _any(
            r"\bslurr\w*",
            r"\b(?:speech|words|talking|speaking) (?:is |are )?(?:garbled|jumbled|slurred|gibberish)",
        )),
        ("one_side_weak", _any(
            r"\b(?:can't|cannot|unable to) (?:move|lift|raise|feel) (?:his|her|my|their|one|the) (?:left |right )?(?:arm|leg|side|hand)",
            r"\b(?:numb\w*|weak\w*|paraly\w*|dead)\b[^.?!]{0,20}\b(?:one side|left side|right side|half (?:of )?(?:his|her|my|the) (?:body|face))",
        )),
        ("stroke_now", r"\b(?:having|had|is having) a stroke\b"),
        ("not_breathing", _any(
            r"\b(?:can't|cannot|can not|unable to|struggling to|barely) breath\w*",
            r"\b(?:not|isn't|stopped|no longer) breathing\b",
            r"\bgasping\b",
            r"\b(?:lips|face|skin) (?:are |is )?(?:turning )?(?:blue|grey|gray)\b",
            r"\bturning blue\b",
        )),
        ("choking", _any(
            r"\b(?:is|he's|she's|i'm|am|baby is|kid is) choking\b",
            r"\bchoking on\b",
        )),
        ("anaphylaxis", _any(
            r"\bthroat\b[^.?!]{0,20}\b(?:closing|swell\w*|swollen|tight\w*)",
            r"\b(?:tongue|lips|mouth)\b[^.?!]{0,25}\b(?:swell\w*|swollen|puff\w*)\b[^.?!]{0,60}\b(?:breath\w*|wheez\w*|gasp\w*|sting|stung|allerg\w*|peanuts?|nuts?|shellfish)",
            r"\b(?:face|eyes?|eyelids)\b[^.?!]{0,25}\b(?:swell\w*|swollen|puff\w*)\b[^.?!]{0,60}\b(?:breath\w*|wheez\w*|gasp\w*|pant\w*|throat|can't swallow)",
            r"\b(?:sting|stung|bitten|allerg\w*|peanuts?|nuts?|shellfish|shrimp|prawns?)\b[^.?!]{0,60}(?:\b(?:tongue|lips|mouth|throat)\b[^.?!]{0,20}\b(?:swell\w*|swollen|puff\w*)|\b(?:swell\w*|swollen) shut)\b",
            r"\banaphyla\w*",
            r"\bused (?:his|her|my|the) epi-?pen",
        )),
        ("unresponsive", r"\b(?:unconscious|unresponsive|(?<!\bi )(?:won't|will not) wake|can't wake|cannot wake|not waking up|passed out and|no pulse|collapsed|slumped|hard to (?:wake|rouse)|barely (?:responding|responsive|conscious|awake)|can't get (?:him|her|them) to (?:respond|wake)|not responding|(?:is|she's|he's|went|gone|goes|looks|and) (?:all )?limp)\b"),
        ("severe_bleeding", _any(
            r"\b(?:bleed\w*|blood)\b[^.?!]{0,30}\b(?:won't|will not|doesn't|does not|can't|isn't|not) (?:stop|slow)",
            r"\b(?:spurting|gushing|pouring|pumping|squirting)\b[^.?!]{0,15}\bblood",
            r"\bblood\b[^.?!]{0,15}\b(?:spurting|gushing|pouring|pumping|everywhere)",
            r"\bsoak\w* (?:through )?[^.?!]{0,20}\b(?:towels?|bandages?|cloths?)",
        )),
        ("overdose_taken", _any(
            r"\b(?:overdosed|overdosing|od'd|took an overdose|taken an overdose)\b",
            r"\bempty (?:pill|tablet|medicine) (?:bottle|packet|box)",
            r"\b(?:took|taken|swallowed|downed|ate|drank|had|popped)\b[^.?!]{0,30}\b(?:whole|entire|full|all (?:of )?(?:my|the|his|her)|bottle|pack(?:et)?|box|handful|\d{2,}|a lot of|lots of|a load of|loads of|heaps of|several|too many|too much|a bunch of|dozens?)\b[^.?!]{0,30}\b(?:pills|tablets|capsules|meds|medication|medicine|paracetamol|acetaminophen|tylenol|ibuprofen|aspirin|insulin|oxy\w*|opioids?|heroin|fentanyl|sleeping|painkillers)",
        )),
        ("poison_swallowed", r"\b(?:swallowed|drank|drunk|ate|eaten|ingested|got into|chewed|licked|sipped)\b[^.?!]{0,40}\b(?:bleach|detergent|pods?|drain cleaner|antifreeze|button batter\w*|batter(?:y|ies)|rat poison|poison|pesticide|weed ?killer|lighter fluid|lamp oil|cleaning (?:fluid|products?|spray)|dishwasher|laundry|mushrooms?|berries|magnets?|iron pills|vitamins|bottle of)"),
        ("seizure", _any(
            r"\bseiz\w*[^.?!]{0,40}\b(?:minutes|won't stop|not stopping|keeps? going|still)\b",
            r"\b(?:having|has had|is having) (?:a )?(?:seizure|fit|convulsions?)\b",
            r"\bconvulsing\b",
            r"\bseizing\b",
        )),
        ("thunderclap_headache", _any(
            r"\bworst headache\b",
            r"\bthunderclap\b",
        )),
        ("blood_vomit", r"\b(?:vomit\w*|throwing up|coughing up|puking|spitting up)\b[^.?!]{0,30}\bblood\b"),
        ("head_injury", r"\b(?:hit|banged|bumped|knocked|smashed|struck) (?:his|her|my|their) head\b[^.?!]{0,80}\b(?:confus\w*|vomit\w*|throwing up|unconscious|passed out|won't wake|drowsy|seiz\w*)"),
        ("meningitis_signs", _any(
            r"\brash\b[^.?!]{0,30}\b(?:doesn't|does not|won't|didn't) fade",
            r"\bstiff neck\b[^.?!]{0,40}\b(?:fever|rash)",
            r"\b(?:fever|rash)\b[^.?!]{0,40}\bstiff neck",
        )),
        ("drowning", _any(
            r"\bdrown\w*",
            r"\bface down in (?:the )?(?:\w+ )?(?:pool|water|bath|pond|lake|river)",
        )),
        ("snake_bite", _any(
            r"\b(?:bitten by a|bit by a) (?:\w+ )?snake",
            r"\bsnake ?bite",
        )),
        ("vision_loss", _any(
            r"\b(?:sudden(?:ly)?|all of a sudden)\b[^.?!]{0,20}\b(?:lost|losing|loss of|can't see|blind)",
            r"\b(?:vision|sight) in (?:one|my|his|her) (?:\w+ )?eye\b[^.?!]{0,15}\b(?:went|is going|has gone|gone) (?:dark|black|blank|out)",
        )),
        ("severe_burn", _any(
            r"\b(?:severe|third[- ]degree|bad) burns?\b",
            r"\bburn\w* (?:over|on) (?:most|half|a large part) of",
        )),
        ("emergency_now", r"\b(?:medical emergency|call(?:ed)? (?:an )?ambulance|heart (?:has )?stopped)\b"),
    ],
    "crisis": [
        ("kill_self", _any(
            r"\b(?:kill|killing|end|ending|off) (?:myself|yourself|herself|himself|themselves)\b",
            r"\bkms\b",
        )),
        ("suicide", _any(
            r"\bsuicidal\b",
            r"\b(?:commit\w*|attempt\w*|thinking (?:about|of)|thoughts (?:about|of)|plan\w*|consider\w*|contemplat\w*|going to|want to|ways? to|methods? of|how to) (?:commit )?suicide\b",
            r"\bsuicide (?:note|plan|attempt|pact)s?\b",
        )),
        ("end_life", _any(
            r"\b(?:end|ending|take|taking) (?:my|her|his|their) (?:own )?life\b",
            r"\bend it all\b",
            r"\bmake it all (?:end|stop)\b",
        )),
        ("want_to_die", _any(
            r"\b(?:wants?|wanted|wanting|wanna|wish|wishes|wishing|ready) (?:to|i (?:was|were)|i could) (?:die|be dead|not (?:be )?(?:alive|here|exist\w*))\b",
            r"\bdon't want to (?:be alive|live|exist|wake up|be here|go on)\b",
            r"\b(?:want|wish|hope|pray)\w*\b[^.?!]{0,30}\b(?:never|not|won't|don't|wouldn't) (?:to )?wake up\b",
            r"\b(?:to|and|so (?:that )?(?:i|she|he|they)) never wake up\b",
            r"\b(?:stop|quit) (?:existing|living|being alive)\b",
            r"\b(?:disappear|vanish|be gone) (?:forever|for good|permanently)\b",
            r"\b(?:sleep|asleep|rest) (?:forever|for ever|permanently)\b",
            r"\beternal sleep\b",
            r"\b(?:slip|fade|drift) away (?:quietly|peacefully|forever|for good|for ever)\b",
        )),
        ("no_reason", _any(
            r"\b(?:no|see the|see any|what's the|is there any) (?:reason|point) (?:to|in|of) (?:live|living|going on|being alive|waking up|carrying on|staying alive)\b",
            r"\bbetter off (?:dead|without me|if i (?:was|were) gone)\b",
            r"\bcan't go on\b",
        )),
        ("goodbye_notes", _any(
            r"\b(?:goodbye|suicide|farewell) (?:letters?|notes?)\b",
            r"\bgiving (?:away )?(?:my|all my) (?:things|stuff|belongings) away\b",
        )),
        ("self_harm", _any(
            r"\bself[- ]?harm\w*",
            r"\b(?:been|keep|kept|started|start|urge to|want to|thinking about|can't stop) (?:cutting|burning|hurting|harming|scratching) (?:myself|herself|himself|themselves|my (?:arms?|legs?|wrists?|skin))",
            r"\bcut (?:myself|my (?:arms?|wrists?|legs?)) on purpose",
            r"\b(?:burn|cut|hurt|harm|hit|punch|scratch|bite|bruise|starve)\w* (?:myself|herself|himself|themselves)\b[^.?!]{0,30}\b(?:to cope|to feel|on purpose|deliberately|as (?:a )?punishment|to punish|to numb|to calm|because i deserve|with (?:a )?(?:cigarettes?|lighter)|when (?:i'm|i am|i feel|i get|the pain|things get|it gets|everything))",
            r"\b(?:knife|blade|razor|scissors|lighter|broken glass|compass|needle|nails)\b[^.?!]{0,30}\b(?:into|against|across|on|over|along) my (?:skin|arms?|thighs?|legs?|wrists?|stomach|body|hands?)\b",
        )),
        ("method_self", _any(
            r"\b(?:painless|quickest|easiest|fastest|quietest|best|surest) way (?:to|for me to) (?:die|end (?:it|my life)|kill myself|go|not wake)",
            r"\b(?:how (?:much|many)|what (?:amount|dose))\b[^.?!]{0,60}\b(?:kill me|to die|for me to die|not wake up|never wake up|end my life|(?:fatal|lethal|deadly) (?:for|to) me)",
        )),
        ("method_research", r"\b(?:researched|looked up|googled|read up on|worked out|figured out|calculated|searching)\b[^.?!]{0,30}\bhow (?:much|many)\b[^.?!]{0,20}\b(?:pills|tablets|paracetamol|acetaminophen|tylenol|ibuprofen|aspirin|painkillers|insulin|antidepressants|meds|medication)\b"),
        ("preparing", r"\b(?:pills|tablets|meds|medication|rope)\b[^.?!]{0,15}\b(?:lined up|counted out|laid out|set out|ready to take|in front of me)"),
        ("stockpiling", r"\b(?:stockpil\w*|hoard\w*|saving up|collecting) (?:my |all my )?(?:pills|tablets|meds|medication)"),
    ],
    "harmful": [
        ("lethal_dose", _any(
            r"\b(?:lethal|fatal|deadly|deadliest|killing) (?:dose|amount|quantity|level|dosage)",
            r"\b(?:dose|amount|quantity|grams?|mg|milligrams?|units?|pills?|tablets?)\b[^.?!]{0,30}\b(?:would|will|could|to|that|needed to) (?:kill|be fatal|be lethal|finish (?:him|her|them|someone) off)\b",
            r"\b(?:dose|amount|quantity|how much|how many)\b[^.?!]{0,50}\b(?:fatal|lethal|deadly)\b",
        )),
        ("amount_to_kill", r"\b(?:how (?:much|many)|what (?:amount|dose|quantity)|which dose)\b[^.?!]{0,70}\b(?:kill|be fatal|be lethal|finish (?:him|her|someone|them) off|stop (?:his|her|someone's|a person's|their) heart|put (?:him|her|someone|them|a \w+ \w+) (?:in|into) a (?:fatal )?coma|(?:make|cause) (?:him|her|them|someone|my \w+|a \w+) (?:to )?(?:die|bleed to death|stop breathing))"),
        ("harm_person", r"\b(?:how (?:do|can|could|would|should) (?:i|you|one|a \w+)|ways? to|best way to|want to|going to|help me|teach me to|tell me how to)\b[^.?!]{0,40}\b(?:poison|drug|spike|sedate|murder|kill|sicken|hurt|harm|incapacitate|knock out)\b[^.?!]{0,10}" + _PERSON),
        ("poison_target", r"\bpoison(?:s|ed|ing)? (?:" + _PERSON + r"|someone's|somebody's|(?:his|her|their) (?:\w+ )?(?:partner|wife|husband|boss|family|colleague|friend|rival|father|mother|child|kids?|neighbou?r|pet|dog|cat))\b"),
        ("make_sick", _any(
            r"\bmake " + _PERSON + r" (?:very |seriously |really |badly )?(?:sick|ill)\b",
            r"\b(?:slip|put|add|mix|sneak|crush|stir|hide)\b[^.?!]{0,25}\b(?:in|into) (?:someone's|somebody's|his|her|their|my \w+'s|a \w+'s) (?:\w+ )?(?:drink|food|tea|coffee|meal|lunch|dinner|breakfast|water|juice|wine|beer|bottle|milk)",
        )),
        ("covert_dosing", r"\b(?:drug|sedate|poison|knock (?:\w+ )?out|spike|swallow|slip|sicken|sick|ill|hurt|harm|flare(?: up)?|react|suffer|worse)\b[^.?!]{0,50}\bwithout (?:him|her|them|anyone|anybody|my \w+) (?:knowing|noticing|finding out|realis\w*|realiz\w*|suspecting|tasting)"),
        ("undetectable", _any(
            r"\b(?:undetectable|untraceable|won't show up|wouldn't show up|not show up|doesn't show up|can't be detected|hard to detect)\b",
            r"\b(?:look|appear|pass) (?:like|as) (?:an? )?(?:accident|natural causes|natural death|heart attack|suicide|illness)",
            r"\blook natural\b",
            r"\b(?:show up|detect\w*|look like|appear|pass)\b[^.?!]{0,30}\b(?:autopsy|post-?mortem|tox(?:icology)? (?:screen|report|test))",
        )),
        ("spike_drink", _any(
            r"\bspike (?:a|her|his|their|someone's|somebody's|my \w+'s) drinks?\b",
            r"\bdrug (?:her|his|their|someone's|somebody's) (?:drink|food|coffee|tea)",
        )),
        ("make_drug_weapon", r"\b(?:make|cook|synthesi[sz]e|brew|manufacture|produce|extract|synthesis (?:route )?for|recipe for)\b[^.?!]{0,30}\b(?:meth\w*|fentanyl|heroin|ricin|sarin|nerve agents?|nerve gas|mustard gas|cyanide|crack|ghb|chloroform|toxins?|poisons?|toxic gas)\b"),
        ("silence_forever", r"\b(?:stops?|stopped) (?:crying|screaming|breathing|moving|talking|waking up)\b[^.?!]{0,20}\b(?:forever|for good|permanently|once and for all)\b"),
        ("tamper", _any(
            r"\btamper\w* with\b",
            r"\bswap (?:his|her|their|someone's) (?:pills|medication|meds)",
        )),
    ],
    "prescription": [
        ("ask_prescribe", _any(
            r"\byou (?:can|could|would|will) prescribe\b",
            r"\b(?:can|could|will|would) you (?:please )?(?:prescribe|put me on|start me on|switch me (?:on)?to)\b",
            r"\b(?:can|could|will|would) you (?:please )?(?:write|give|get|prescribe|send|authori[sz]e|renew|sign|approve|call in|order)\b[^.?!]{0,40}\b(?:prescription|script|refill|rx|something (?:strong|stronger|for)|" + _RX_DRUGS + r")\b",
            r"\bprescribe me\b",
            r"\bwrite (?:me )?(?:a|an) (?:new )?(?:prescription|script)\b",
        )),
        ("without_prescription", _any(
            r"\bwithout (?:a |an |any |needing a |needing an |seeing a |)?(?:prescription|script|rx|doctor|doctor's note|gp|physician|seeing anyone)\b",
            r"\bno[- ]prescription\b",
            r"\bover the counter\b[^.?!]{0,30}\b" + _RX_DRUGS,
        )),
        ("dose_request", _any(
            _DOSE_ASK + r"[^.?!]{0,50}\b" + _RX_DRUGS,
            r"\b" + _RX_DRUGS + r"\b[^.?!]{0,40}" + _DOSE_ASK,
            r"\b" + _RX_DRUGS + r"(?: \w+)? (?:dose|dosage|amount|strength)\b",
        )),
        ("change_dose", _any(
            r"\b(?:double|increase|raise|up|bump up|lower|reduce|adjust|change|cut|skip) (?:my|the|his|her) (?:\w+ )?(?:dose|dosage|amount|mg|milligrams)",
            r"\b(?:bump|push|go|ramp|step|put) (?:it|them|that|this|my \w+|the \w+)? ?up\b[^.?!]{0,20}\b\d+\s*(?:mg|mcg|units?|ml)\b",
            r"\bhow far can i (?:raise|increase|up)",
        )),
        ("get_drug", _any(
            r"\b(?:buy|order|get hold of|obtain|purchase|source|score)\b[^.?!]{0,30}\b" + _RX_DRUGS + r"\b[^.?!]{0,30}\b(?:online|dark ?web|without|illegally)",
            r"\b(?:talk|convince|persuade|get) my (?:gp|doctor|psychiatrist) (?:into|to) (?:giving|prescribe|prescribing|give)",
        )),
    ],
}
_RULE_RES = {label: [(name, re.compile(rx)) for name, rx in rules] for label, rules in RULES.items()}

_EDUCATIONAL = re.compile(r"^(?:what|why|how|which|when|is|are|does|do|can|could|should|who)\b")
_PERSONAL = re.compile(
    r"\b(?:i|i'm|i've|i'd|me|my|mine|we|we're|our|us|he|he's|his|him|she|she's|her|they're|their|someone here|right now|just now|currently|this morning|tonight|today)\b"
)


def is_educational(norm: str) -> bool:
    """A general question ("what are the signs of a stroke?") with no person or present situation."""
    return bool(_EDUCATIONAL.match(norm)) and not _PERSONAL.search(norm)


def match_rules(norm: str) -> list[tuple[str, str]]:
    """(label, rule name) for every rule that matches; emergency/crisis rules skip educational questions."""
    educational = is_educational(norm)
    hits = []
    for label, rules in _RULE_RES.items():
        if educational and label in ("emergency", "crisis"):
            continue
        hits += [(label, name) for name, rx in rules if rx.search(norm)]
    return hits


# --- semantic classifier -------------------------------------------------------------------------


SMALL_BATCH = 16
_ONE_THREAD = threading.Lock()


class Encoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local (or cached HF) model."""

    def __init__(self, reference: str):
        from transformers import AutoModel, AutoTokenizer

        path = str(builtin_encoder_dir()) if reference == BUILTIN_ENCODER else reference
        local = Path(path).expanduser().is_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        self.model = AutoModel.from_pretrained(path, local_files_only=local).eval()

    def encode(self, texts: list[str], batch_size: int = 64):
        import torch

        if len(texts) <= SMALL_BATCH:
            with _ONE_THREAD:  # a handful of short sentences: one thread is as fast, and far faster on a busy CPU
                previous = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    return self._encode(texts, batch_size)
                finally:
                    torch.set_num_threads(previous)
        return self._encode(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks)


@lru_cache(maxsize=4)
def load_encoder(reference: str) -> Encoder:
    return Encoder(reference)


def load_exemplars(path: Path = EXEMPLARS_PATH) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [r for r in rows if r.get("label") not in LABELS or not r.get("text")]
    if bad:
        raise ValueError(f"{path}: {len(bad)} exemplar rows without text or with an unknown label, e.g. {bad[0]}")
    return rows


class SemanticClassifier:
    """Nearest-exemplar classifier: class score = mean cosine of its ``top_k`` nearest exemplars."""

    def __init__(self, encoder: Encoder, exemplars: list[dict], top_k: int = SEMANTIC_TOP_K):
        self.encoder = encoder
        self.texts = [r["text"] for r in exemplars]
        self.labels = [r["label"] for r in exemplars]
        self.matrix = encoder.encode([normalise(t) for t in self.texts])
        self.top_k = top_k
        self.index = {label: [i for i, lab in enumerate(self.labels) if lab == label] for label in LABELS}

    def scores(self, texts: list[str]) -> list[dict[str, tuple[float, int]]]:
        """Per text: label -> (score, index of the nearest exemplar of that label)."""
        sims = self.encoder.encode(texts) @ self.matrix.T
        out = []
        for row in sims:
            per_label = {}
            for label, idx in self.index.items():
                if not idx:
                    continue
                values, order = row[idx].sort(descending=True)
                per_label[label] = (float(values[: self.top_k].mean()), idx[int(order[0])])
            out.append(per_label)
        return out


# --- responses -----------------------------------------------------------------------------------

_POISON_CONTEXT = re.compile(
    r"\b(?:swallow\w*|drank|drunk|ingest\w*|ate|eaten|overdos\w*|poison\w*|pills|tablets|bleach|detergent|pods?|antifreeze|batter(?:y|ies)|chemicals?|too much|too many|bottle)\b"
)


def emergency_reply(region: Region, text: str) -> str:
    """Calm, fixed: call the number first, then what to do while waiting."""
    lines = [
        f"Call {region.emergency} now - this could be a medical emergency and needs help immediately.",
        "Please call even if you were hoping to avoid it or asked me not to say so; emergency services are the fastest way to get the right help.",
    ]
    if _POISON_CONTEXT.search(normalise(text)):
        lines.append(
            f"If something was swallowed or taken, keep the container or packet to show them; {region.poison} can also advise, "
            "but call the emergency number first if the person is very drowsy, hard to wake, having trouble breathing or having a seizure."
        )
    lines.append(
        "While you wait: stay with the person, keep them still and comfortable, don't give them anything to eat, drink or take "
        "unless the dispatcher tells you to, and follow the dispatcher's instructions. If they stop breathing and you know how, start CPR."
    )
    lines.append("I'm an AI and can't assess this safely - the emergency service can.")
    return " ".join(lines)


def crisis_reply(region: Region) -> str:
    """Compassionate, fixed, with the crisis line and emergency number; never method details."""
    return (
        "I'm really sorry you're going through this, and I'm glad you told me. You don't have to face it alone. "
        f"Please reach out for support right now: {region.crisis} - they're there to listen any time, day or night. "
        f"If you are in immediate danger or have already hurt yourself, call {region.emergency} now. "
        "If you can, tell someone you trust how you're feeling, stay with them, and put some distance between yourself and "
        "anything you could use to hurt yourself. I can't help with ways of causing harm, but I'm here to talk - "
        "would you like to tell me a bit about what's been happening?"
    )


def harmful_reply(region: Region) -> str:
    """Fixed refusal with Poison Control and emergency resources."""
    return (
        "I can't help with that. I don't provide information that could be used to seriously harm someone, such as lethal "
        "amounts of a drug, ways to poison or injure a person, or how to make dangerous substances. "
        f"If someone may have been poisoned or has taken too much of something, contact {region.poison} or call {region.emergency} now. "
        f"If you're having thoughts of harming yourself or someone else, please {region.crisis} to talk to someone right away."
    )


PRESCRIPTION_PREFIX = (
    "I can't prescribe medicines or give you a specific dose: the right medicine and amount depend on your health, "
    "your other medicines and your history, so please ask your doctor or pharmacist. Here is some general information:"
)
PRESCRIPTION_ADDENDUM = (
    "The user is asking for a prescription, a specific dose or amount of a prescription or controlled medicine, or a way to get "
    "one without a prescription. Do not prescribe, do not give doses, amounts, strengths or schedules, and do not explain how to "
    "obtain the medicine without a prescription. Give only general information about the medicine or condition and advise the "
    "user to speak to their doctor or pharmacist."
)


# --- dose filter ---------------------------------------------------------------------------------

_NUM = r"\d+(?:[.,]\d+)?(?:\s*(?:-|to|or)\s*\d+(?:[.,]\d+)?)?"
_UNIT = (
    r"(?:mg|mgs|mcg|µg|μg|ug|ng|g|gm|grams?|milligrams?|micrograms?|ml|mls|millilit(?:er|re)s?|cc|units?|iu|meq|mmol|"
    r"tablets?|tabs?|pills?|capsules?|caps?|puffs?|drops?|patch(?:es)?|sprays?|teaspoons?|tsp|tablespoons?|tbsp|lozenges?|"
    r"suppositor(?:y|ies)|injections?|doses?|sachets?)"
)
_WORD_NUM = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|half|one and a half|a couple of)"
DOSE_PATTERNS = [
    rf"\b{_NUM}\s*{_UNIT}\b(?!\s*/\s*(?:dl|l)\b)",
    rf"\b{_WORD_NUM}\s+(?:tablets?|pills?|capsules?|puffs?|drops?|teaspoons?|patch(?:es)?|sachets?|injections?)\b",
    r"\b(?:mg|mcg|µg|ml|units?|iu)\s*/\s*(?:kg|m2|m²|day|dose|hr|hour)\b|\bper\s+kg\b",
    r"\bevery\s+\d+(?:\s*(?:-|to)\s*\d+)?\s*(?:hours?|hrs?|h)\b",
    r"\b(?:\d+|once|twice|three|four)\s+times?\s+(?:a|per)\s+(?:day|week)\b|\b(?:once|twice)\s+(?:daily|a day|weekly)\b",
]
_DOSE_RE = re.compile("|".join(DOSE_PATTERNS), re.IGNORECASE)
_BARE_UNIT_RE = re.compile(r"\b(?:mcg|µg|μg|micrograms?|mg/kg|mcg/kg)\b", re.IGNORECASE)
_RX_DRUG_RE = re.compile(r"\b" + _RX_DRUGS + r"\b", re.IGNORECASE)
DOSE_NOTE = "[Dose details removed - your doctor or pharmacist can tell you the right dose for you.]"


def has_dose(text: str) -> bool:
    """True when text holds a specific dose figure ("10 mg", "2 tablets every 4 hours", "mg/kg", "mcg")."""
    return bool(_DOSE_RE.search(text) or _BARE_UNIT_RE.search(text))


def _sentences(line: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", line) if s]


def remove_doses(answer: str, only_rx_drugs: bool = False) -> tuple[str, bool]:
    """Replace every sentence holding a dose instruction with ``DOSE_NOTE`` (one note per run of removals).

    Works line by line so lists keep their shape; a bullet whose text was all doses becomes a
    single note. With ``only_rx_drugs`` nothing is removed unless the answer names a
    prescription/controlled drug (used for answers triaged general, so "drink 2 litres of water"
    in an answer about hydration survives).
    """
    if only_rx_drugs and not _RX_DRUG_RE.search(normalise(answer)):
        return answer, False
    out: list[str] = []
    removed = False
    for line in answer.split("\n"):
        bullet = re.match(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", line)
        marker, body = (bullet.group(0), line[bullet.end():]) if bullet else ("", line)
        kept: list[str] = []
        for sentence in _sentences(body):
            if not has_dose(sentence):
                kept.append(sentence)
            elif not kept or kept[-1] != DOSE_NOTE:
                kept.append(DOSE_NOTE)
        if kept == [DOSE_NOTE] and out and out[-1].strip() == DOSE_NOTE:
            removed = True
            continue  # a run of dose-only lines collapses into the note already written
        if DOSE_NOTE in kept:
            removed = True
            line = DOSE_NOTE if kept == [DOSE_NOTE] else marker + " ".join(kept)
        out.append(line)
    return "\n".join(out).strip(), removed


# --- the guardrails ------------------------------------------------------------------------------


class Guardrails:
    """Triage a user turn, decide the response route, post-filter the model's answer."""

    def __init__(self, config: GuardrailsConfig | None = None):
        self.config = config or GuardrailsConfig()
        self._classifier: SemanticClassifier | None = None
        self._lock = threading.Lock()

    # triage ----------------------------------------------------------------------------------

    @property
    def classifier(self) -> SemanticClassifier:
        """Encoder + exemplar embeddings, built on first use and kept on the instance."""
        if self._classifier is None:
            with self._lock:
                if self._classifier is None:
                    self._classifier = _cached_classifier(self.config.encoder)
        return self._classifier

    def semantic(self, core: str, incumbent: str = "general") -> list[tuple[str, float, str]]:
        """(label, score, nearest exemplar) for each segment whose best class beats the incumbent.

        Class scores are the mean cosine of the class's nearest exemplars. A segment's best class
        counts when it leads the general class by ``semantic_threshold`` -- comparing against
        general rather than an absolute cut-off keeps benign questions on the same topics ("what
        are the warning signs of a stroke?") quiet. ``incumbent`` is the label the rules already
        gave: to override it with a more urgent label, the segment must lead that class by the
        same margin too (so "scratching my arms until they bleed" stays crisis, not emergency).
        """
        parts = segments(core)
        if not parts:
            return []
        clf = self.classifier
        rank = LABELS.index(incumbent)
        hits = []
        for per_label in clf.scores(parts):
            label = max(per_label, key=lambda k: per_label[k][0])
            score, nearest = per_label[label]
            if label == "general" or score < SEMANTIC_FLOOR:
                continue
            rivals = [per_label.get("general", (0.0, -1))[0]]
            if LABELS.index(label) < rank and incumbent != "general":
                rivals.append(per_label[incumbent][0])
            if all(score - rival >= self.config.semantic_threshold for rival in rivals):
                hits.append((label, score, clf.texts[nearest]))
        return hits

    def triage(self, text: str) -> Triage:
        norm = normalise(text)
        framings = detect_framings(norm)
        core = strip_framings(norm)
        found: dict[str, float] = {}
        reasons = [f"framing:{name}" for name in framings]
        for label, name in match_rules(norm):
            found[label] = 1.0
            reasons.append(f"rule:{label}:{name}")
        incumbent = next((label for label in LABELS if label in found), "general")
        for label, score, nearest in self.semantic(core, incumbent):
            found[label] = max(found.get(label, 0.0), score)
            reasons.append(f"semantic:{label}:{score:.2f} ~ {nearest!r}")
        label = next((label for label in LABELS if label in found), "general")
        return Triage(label, round(found.get(label, 1.0), 4), reasons)

    def triage_turns(self, prompt: str, history: list[dict] | None = None, context_turns: int = 2) -> Triage:
        """Triage the latest turn; if the recent user context is more urgent, that wins (reason 'context')."""
        current = self.triage(prompt)
        earlier = [m.get("content", "") for m in (history or []) if m.get("role") == "user" and m.get("content")][-context_turns:]
        if not earlier:
            return current
        joined = self.triage(" ".join([*earlier, prompt]))
        if LABELS.index(joined.label) < LABELS.index(current.label):
            return Triage(joined.label, joined.score, [*joined.reasons, "context"])
        return current

    # routing ---------------------------------------------------------------------------------

    def before(self, prompt: str, history: list[dict] | None = None) -> Decision:
        triage = self.triage_turns(prompt, history)
        if not self.config.enabled:
            return Decision(triage)
        region = self.config.resources
        label = triage.label
        if label == "emergency":
            context = " ".join([*(m.get("content", "") for m in (history or []) if m.get("role") == "user"), prompt])
            return Decision(triage, reply=emergency_reply(region, context))
        if label == "crisis":
            return Decision(triage, reply=crisis_reply(region))
        if label == "harmful":
            return Decision(triage, reply=harmful_reply(region))
        if label == "prescription":
            return Decision(triage, system_addendum=PRESCRIPTION_ADDENDUM, prefix=PRESCRIPTION_PREFIX)
        return Decision(triage)

    def after(self, decision: Decision, answer: str) -> Guarded:
        label = decision.triage.label
        if not self.config.enabled:
            return Guarded(answer, label, [])
        fired = [] if label == "general" else [f"triage:{label}"]
        if decision.reply is not None:
            return Guarded(decision.reply, label, [*fired, "fixed_reply"])
        answer = (answer or "").strip()
        if self.config.block_doses:
            answer, removed = remove_doses(answer, only_rx_drugs=label != "prescription")
            if removed:
                fired.append("dose_removed")
        if decision.prefix:
            answer = f"{decision.prefix}\n\n{answer}".strip()
            fired.append("prefix")
        disclaimer = self.disclaimer
        if disclaimer and disclaimer not in answer:
            answer = f"{answer}\n\n{disclaimer}".strip()
            fired.append("disclaimer")
        return Guarded(answer, label, fired)

    def respond(self, prompt: str, generate: Callable[[str | None], str], history: list[dict] | None = None) -> Guarded:
        """before -> (fixed reply, or generate(system_addendum)) -> after.

        ``generate`` receives the system addendum (or None) and returns the model's text; it is
        never called when the decision carries a fixed reply.
        """
        decision = self.before(prompt, history)
        if decision.reply is not None:
            return self.after(decision, decision.reply)
        return self.after(decision, generate(decision.system_addendum))

    def stream(self, decision: Decision, pieces: Iterable[str]) -> "GuardedStream":
        """``after`` for an answer that arrives in pieces (chat REPL, UI, API streaming).

        Iterating the result yields text as it becomes safe to show; its ``result`` (set once the
        iteration ends) is exactly ``after(decision, <whole answer>)``, and the yielded pieces add
        up to ``result.answer``.
        """
        return GuardedStream(self, decision, pieces)

    @property
    def disclaimer(self) -> str:
        return self.config.disclaimer_text


_CLASSIFIER_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _build_classifier(encoder: str, exemplars_mtime: float) -> SemanticClassifier:
    return SemanticClassifier(load_encoder(encoder), load_exemplars())


def _cached_classifier(encoder: str) -> SemanticClassifier:
    """One classifier per (encoder, exemplar file version), shared by instances."""
    with _CLASSIFIER_LOCK:
        return _build_classifier(encoder, EXEMPLARS_PATH.stat().st_mtime)


_SENTENCE_END = re.compile(r"(?<=[.!?:])\s|\n")


class GuardedStream:
    """Pieces of a guarded answer, released sentence by sentence.

    A complete sentence is shown as soon as the post-checks leave it unchanged. Once a sentence
    holds a dose figure, nothing more is shown until the model has finished: whether that
    sentence must go can depend on text that comes later (a prescription drug named afterwards),
    so the rest is released only from the final ``after`` result. Fixed replies come whole.
    """

    def __init__(self, guardrails: Guardrails, decision: Decision, pieces: Iterable[str]):
        self.guardrails, self.decision, self.pieces = guardrails, decision, pieces
        self.result: Guarded | None = None
        self.raw = ""
        """The model's own text, as generated."""

    def __iter__(self) -> Iterator[str]:
        decision, shown = self.decision, ""
        if decision.reply is not None or not self.guardrails.config.enabled:
            for piece in ([] if decision.reply is not None else self.pieces):
                self.raw += piece
                shown += piece
                yield piece
            self.result = self.guardrails.after(decision, decision.reply or self.raw)
            if self.result.answer.startswith(shown):
                yield self.result.answer[len(shown):]
            return
        held = False
        for piece in self.pieces:
            self.raw += piece
            if held:
                continue
            ends = [m.start() for m in _SENTENCE_END.finditer(self.raw)]
            if not ends:
                continue
            complete = self.raw[: ends[-1]].strip()
            if has_dose(complete):
                held = True
                continue
            text = f"{decision.prefix}\n\n{complete}" if decision.prefix else complete
            if text.startswith(shown) and len(text) > len(shown):
                yield text[len(shown):]
                shown = text
        self.result = self.guardrails.after(decision, self.raw)
        final = self.result.answer
        if final.startswith(shown):
            yield final[len(shown):]
        else:  # whitespace normalised differently: start the answer over rather than show a wrong mix
            yield "\n\n" + final

