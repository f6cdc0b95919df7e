"""Phrases and cues of the rule-based CheXpert labeler.

Every pattern here is a regular expression over *normalised* sentence text: lower case, words
separated by single spaces, hyphens, slashes, commas and brackets turned into spaces,
apostrophes dropped (see :func:`ekagen.labeler.engine.normalize`). Raw reports and
R2Gen-cleaned reports therefore meet the same strings.

The lists are written for the language of IU X-Ray and MIMIC-CXR reports. Choices that differ
between labelers are documented in :mod:`ekagen.labeler`.
"""

from __future__ import annotations

from ekagen.observations import NEGATIVE, UNCERTAIN

ATELECTASIS = "Atelectasis"
CARDIOMEGALY = "Cardiomegaly"
CONSOLIDATION = "Consolidation"
EDEMA = "Edema"
ENLARGED_CM = "Enlarged Cardiomediastinum"
FRACTURE = "Fracture"
LUNG_LESION = "Lung Lesion"
LUNG_OPACITY = "Lung Opacity"
NO_FINDING = "No Finding"
PLEURAL_EFFUSION = "Pleural Effusion"
PLEURAL_OTHER = "Pleural Other"
PNEUMONIA = "Pneumonia"
PNEUMOTHORAX = "Pneumothorax"
SUPPORT_DEVICES = "Support Devices"

# Adverbs that may sit between a finding word and its modifier ("mildly enlarged heart").
_ADV = (r"(?:(?:mildly|moderately|markedly|severely|massively|minimally|slightly|significantly"
        r"|substantially|grossly|borderline|mild|moderate|severe|xxxx) )*")

# --------------------------------------------------------------------------------------------
# Mention phrases. A mention's polarity comes from the negation/uncertainty cues around it.
# Prefixes like "[a-z]*" let a key word match when R2Gen cleaning glued two words together
# ("scarring/atelectasis" -> "scarringatelectasis").
# --------------------------------------------------------------------------------------------
MENTIONS: dict[str, list[str]] = {
    ATELECTASIS: [
        r"(?!non)[a-z]*atelecta[a-z]*",
        r"(?<!vertebral )(?<!body )(?<!compression )collapsed?",
    ],
    CARDIOMEGALY: [
        r"(?!non)[a-z]*cardiomegaly",
        r"cardiac (?:silhouette |shadow )?enlargement",
        r"(?:enlargement|enlarged size) of the (?:heart|cardiac (?:silhouette|shadow|size"
        r"|contour))",
        rf"(?<!non )(?:enlarged|large|big) {_ADV}(?:heart|cardiac (?:silhouette|shadow|size"
        r"|contour)"
        r"|cardiac)(?! and mediastinal)",
    ],
    CONSOLIDATION: [
        r"(?!non)[a-z]*consolidat(?:ion|ions|ive|ed|ing)",
    ],
    EDEMA: [
        r"(?<!tissue )(?!non|lymph|myx)[a-z]*edema(?:tous)?",
        r"(?:pulmonary )?venous hypertension",
        r"congestive (?:heart )?failure",
        r"chf",
        r"heart failure",
        r"fluid overload",
        r"kerley(?: b)?(?: lines)?",
        r"(?:vascular|venous) (?:engorgement|plethora)",
        r"increased (?:pulmonary |lung |central )?(?:vascularity|vasculature|vascular markings)",
        r"engorged (?:pulmonary )?(?:vessels|vasculature|vascularity)",
    ],
    ENLARGED_CM: [
        rf"(?<!non )(?:widened|wide|widening of the|enlarged|prominent) {_ADV}"
        r"(?:superior )?mediastin"
        r"(?:um|al (?:silhouette|contours?|shadow|width))",
        r"mediastinal (?:widening|enlargement|prominence)",
        r"(?:widening|enlargement|prominence) of (?:the )?(?:superior )?"
        r"mediastin(?:um|al contours?)",
    ],
    FRACTURE: [
        r"(?<!catheter )(?<!screw )(?<!wire )(?<!wires )(?<!lead )(?<!leads )(?<!hardware )"
        r"(?<!screw is )(?<!wire is )(?<!lead is )(?<!screws are )(?<!wires are )"
        r"(?!non)[a-z]*fractur(?:e|es|ed|ing)",
        r"fx",
        r"broken (?:ribs?|bones?|clavicle)",
    ],
    LUNG_LESION: [
        r"(?<!calcified )(?!non)[a-z]*nodul(?:e|es|ar|arity)",
        r"(?<!muscle )(?<!body )(?<!breast )mass(?:es)?(?! effect)",
        r"mass ?like",
        r"(?:lung|pulmonary|cavitary|cavitating|parenchymal|spiculated|pleural based|mass|apical"
        r"|lobe|hilar) lesions?",
        r"tumou?rs?",
        r"neoplasms?",
        r"(?!non)[a-z]*carcinoma",
        r"malignan(?:cy|cies|t)",
        r"(?:lung|bronchogenic|pulmonary) cancer",
        r"(?:pulmonary|lung) metastas[ie]s",
        r"lump",
    ],
    LUNG_OPACITY: [
        r"(?!non)[a-z]*opaci(?:ty|ties|fication|fications|fied)",
        r"(?!non)[a-z]*infiltrat(?:e|es|ion|ions|ive)",
        r"air ?space (?:disease|process|filling|opacit(?:y|ies))",
        r"alveolar (?:disease|process|filling)",
        r"ground ?glass",
        r"haz(?:y|iness)",
        r"reticul(?:ar|onodular) (?:opacit(?:y|ies)|patterns?|densit(?:y|ies)|changes?"
        r"|markings?)",
        r"reticulations?",
        r"decreased translucency",
        r"increased densit(?:y|ies)",
        r"interstitial (?:markings?|patterns?|lung)",
        r"(?:peribronchial|bronchial|bronchovascular)? ?wall thickening",
        r"peribronchial thickening",
        r"(?<!pleural )(?<!pleural apical )scar(?:s|ring|red)?",
    ],
    PLEURAL_EFFUSION: [
        r"(?<!pericardial )(?<!joint )(?<!knee )[a-z]*effusions?",
        r"pleural fluid",
        r"(?:hydro|hemo)thorax",
        r"pleural (?:and|or) pericardial effusions?",
    ],
    PLEURAL_OTHER: [
        r"pleural (?:thickening|scarring|scar|scars|plaques?|calcifications?|fibrosis|reaction)",
        r"pleura(?:l)? (?:is |are |appears )?thickened",
        r"thickened pleura",
        r"pleuro ?parenchymal (?:scarring|scar|scars|thickening|changes?)",
        r"pleural parenchymal (?:scarring|scar|scars|thickening|changes?)",
        r"fibrothorax",
        r"fibros[ie]s",
        r"pleuro ?pericardial scar(?:s|ring)?",
        r"apical (?:pleural )?(?:cap|capping)",
        r"pleural based (?:scarring|thickening)",
        r"fissur(?:e|al) thickening",
        r"thicken(?:ing|ed) (?:of |in )?(?:the )?(?:\S+ )?fissures?",
        r"(?:bi)?apical (?:\S+ )?thickening",
    ],
    PNEUMONIA: [
        r"(?!non)[a-z]*pneumonias?",
        r"pneumonitis",
        r"(?<!granulomatous )(?<!tuberculous )(?<!tuberculosis )(?<!histoplasmosis )infections?",
        r"infectious(?: process| etiology| disease)?",
    ],
    PNEUMOTHORAX: [
        r"(?!non)[a-z]*pneumothora(?:x|ces|xes)",
        r"ptx",
        r"pleural air(?: collections?)?",
        r"air in the pleural space",
    ],
    SUPPORT_DEVICES: [
        r"tubes?",
        r"catheters?",
        r"(?:central|venous|picc|arterial|jugular|ij|subclavian|swan ganz|dialysis|midline"
        r"|hickman|port|femoral|access|iv) (?:venous )?(?:catheter|line)s?",
        r"picc",
        r"cvc",
        r"port ?a ?cath",
        r"mediport",
        r"power ?port",
        r"(?<!support )ports?",
        r"pacemakers?",
        r"pacers?",
        r"pacing (?:device|generator|wires?|leads?|system)",
        r"aicd",
        r"icd",
        r"defibrillators?",
        r"defib",
        r"(?:pacer|pacemaker|pacing|icd|cardiac|transvenous|epicardial|defibrillator|ventricular"
        r"|atrial|ekg|ecg|monitoring|telemetry|xxxx) leads?",
        r"leads",
        r"wires?",
        r"sternotomy (?:sutures|xxxx)",
        r"clips?",
        r"staples?",
        r"stents?",
        r"(?:prosthetic|mechanical|artificial|bioprosthetic|replacement|porcine|metallic|"
        r"replaced) (?:aortic |mitral |tricuspid |heart )?valves?",
        r"valve (?:replacement|prosthesis|prostheses)",
        r"avr",
        r"mvr",
        r"tavr",
        r"annuloplasty(?: ring)?",
        r"hardware",
        r"(?:fixation|surgical|metallic|compression|orthopedic) (?:plates?|screws?|devices?)",
        r"screws?",
        r"rods?",
        r"(?<!breast )prosthes(?:is|es)",
        r"prosthetic",
        r"(?:right|left|sided) chest xxxx",
        r"(?:central|venous|picc|port) xxxx",
        r"tips? (?:\S+ ){0,4}?(?:svc|superior vena cava|atrium|cavoatrial|caval|carina|stomach)",
        r"generators?",
        r"stimulators?",
        r"tips (?:shunt|stent)",
        r"suture material",
        r"(?:internal|screw|surgical|hardware|plate) fixation",
        r"fixation (?:xxxx|hardware|plates?|screws?|rods?|devices?)",
        r"(?:bone |suture )?anchors?",
        r"dual (?:xxxx|chamber|lead)",
        r"arthroplast(?:y|ies)",
        r"(?:shoulder|humeral) replacement",
        r"devices?",
        r"drains?",
        r"cannula",
        r"coils?",
        r"(?:loop|event) recorder",
        r"electrodes?",
        r"balloon pump",
        r"iabp",
        r"lvad",
        r"tracheostomy",
        r"gastric band",
        r"ivc (?:filter|xxxx)",
        r"cerclage",
        r"sutures",
        r"suture line",
        r"(?:vp|ventriculoperitoneal) shunt",
        r"shunt (?:catheter|tubing)",
        r"apparatus",
    ],
}

# Mentions that are uncertain at most: CheXpert reads vascular or pulmonary congestion,
# indistinctness and vascular prominence as uncertain edema. A negation still makes them 0.
UNCERTAIN_MENTIONS: dict[str, list[str]] = {
    EDEMA: [
        r"(?:vascular|venous|pulmonary|interstitial|perihilar) congestion",
        r"congestive changes?",
        r"(?:vascular )?indistinctness",
        r"(?:central )?(?:pulmonary )?vascular prominence",
        r"(?:vascular|venous) redistribution",
    ],
}

# A positive or uncertain heart failure also makes Cardiomegaly uncertain (CheXpert's CHF rule).
HEART_FAILURE = r"(?:congestive (?:heart )?failure|chf|heart failure)"

# CheXpert's "other findings": not one of the 14 observations, but a positive or uncertain
# mention withholds No Finding (emphysema, granuloma, degenerative changes, scoliosis, ...).
# Negation and uncertainty apply as to any mention ("no emphysema" keeps No Finding).
OTHER_FINDINGS: list[str] = [
    r"emphysema(?:tous)?", r"blunt(?:ing|ed)?", r"densit(?:y|ies)", r"elevat(?:ion|ed)",
    r"eventration", r"[a-z]*scolio(?:sis|tic)", r"degenera[a-z]*", r"calcifi[a-z]*",
    r"hyperinflat[a-z]*", r"bronchospasm", r"asthma", r"hernias?", r"copd",
    r"plaques?", r"osteophyt[a-z]*", r"aortic disease", r"bronchiolitis",
    r"airways? disease", r"thicken(?:ing|ed)", r"cephalization", r"aspiration", r"bullae",
    r"bullous", r"contusions?", r"atherosclero[a-z]*", r"osteopenia", r"metastas[ie]s",
    r"metastatic", r"granulomas?", r"granulomatous", r"pneumomediastinum",
    r"pneumoperitoneum", r"osteodystrophy", r"cuffing", r"irregular lucency", r"inflam[a-z]*",
    r"fissures?", r"hypertension", r"prominen(?:t|ce)", r"[a-z]*kypho(?:sis|tic)",
    r"hyperexpansion", r"bullets?", r"thoracentesis", r"bronchitis", r"volume loss",
    r"loss of (?:lung )?volume", r"deformit(?:y|ies)", r"hemorrhage", r"hematoma",
    r"radiopaque", r"aerophagia", r"arthropathy",
]

# Words that cleaning can glue together when it deletes a slash or hyphen without a space
# ("atelectasis/airspace disease" -> "atelectasisairspace disease"). A token that is not itself
# one of these words but splits into two of them is split back.
GLUE_WORDS = frozenset("""
    air airspace and atelectases atelectasis atelectatic aspiration calcified cardiac cardiomegaly
    catheter clips collapse congestion consolidation defibrillator disease diseases dislocation
    dislocations edema edematous effusion effusions emphysema enlarged enlargement fibrosis fluid
    fracture fractures granuloma granulomas heart hemorrhage infection infectious infiltrate
    infiltrates infiltrative inflammation inflammatory lesion line lines mass masses nodule nodules
    normal opacities opacity or parenchymal pacemaker pleura pleural pneumonia pneumonitis
    pneumothorax pulmonary scar scarring scars seen size space stable thickened thickening tube
    tubes unremarkable vascular well wires hemothorax tuberculous prominence gt lt
""".split())

# --------------------------------------------------------------------------------------------
# Organ + state phrases ("heart size is normal", "the mediastinum is widened", "clear lungs").
# Each subject has predicates; a predicate carries a dict observation -> value (1.0 means the
# value then goes through the normal negation/uncertainty analysis, other values are fixed).
# --------------------------------------------------------------------------------------------
_NORMAL = (r"(?:normal|within normal limits|unremarkable|wnl|normal in size|normal size"
           r"|nonenlarged|non enlarged|non ?widened|small)")
# "Upper limits of normal" is a normal heart (it matches _NORMAL); "borderline" is uncertain.
_BORDERLINE = (r"(?:(?:(?:at |near )?(?:the )?(?:upper|top|high) (?:limits? )?(?:of )?)?normal"
               r" (?:or|to) (?:\S+ )?(?:enlarged|large)|borderline(?: enlarged| large| in size"
               r"| size)?)")

HEART_SUBJECT = (r"(?:heart(?: size| shadow| silhouette)?|size of the heart"
                 r"|cardiac (?:size|silhouette"
                 r"|shadow|contours?|diameter|outline)|cardiac)")
# "Cardiomediastinal silhouette" is Enlarged Cardiomediastinum only in CheXpert's vocabulary;
# heart and mediastinum named together are both.
CM_SUBJECT = (r"(?:cardio ?mediastinal(?: (?:silhouettes?|contours?|shadow|structures|size|outline"
              r"|borders?))?|cardiomediastinum)")
HEART_AND_MEDIASTINUM = (r"(?:cardiac and mediastinal(?: (?:silhouettes?|contours?|shadows?"
                         r"|borders?))?|heart and mediastinum|mediastinum and heart"
                         r"|heart and mediastinal (?:contours?|silhouettes?))")
MEDIASTINUM_SUBJECT = (r"(?:(?:superior )?mediastinum|(?:hilar and )?mediastinal (?:and hilar )?"
                       r"(?:contours?|silhouettes?|width|structures|shadow|borders?|outline))")
VASCULAR_SUBJECT = (r"(?:(?:pulmonary|lung|central) (?:vascularity|vasculature|vessels|vascular"
                    r" markings|vascular pattern|xxxx)|vascularity|vasculature)")

# "Stable" or "unchanged" heart, silhouette or mediastinum: uncertain (CheXpert), unless it is
# also called normal ("stable and normal heart size" is 0, negation comes first).
_STABLE = (r"(?:stable|unchanged|not changed|similar to prior)"
           r"(?!(?: \S+){0,5}? (?:normal|unremarkable|within normal limits))")

# (subject, [(predicate, {observation: value})]); first matching predicate after the subject.
# Only observations CheXpert's vocabulary mentions get a value: "the lungs are clear" and
# "sharp costophrenic angles" give nothing, as in CheXpert.
STATE_PHRASES: list[tuple[str, list[tuple[str, dict[str, float]]]]] = [
    (HEART_AND_MEDIASTINUM, [
        (_BORDERLINE, {CARDIOMEGALY: UNCERTAIN, ENLARGED_CM: UNCERTAIN}),
        (_NORMAL, {CARDIOMEGALY: NEGATIVE, ENLARGED_CM: NEGATIVE}),
        (_STABLE, {CARDIOMEGALY: UNCERTAIN, ENLARGED_CM: UNCERTAIN}),
        (r"(?:enlarged|enlargement|large|widened|prominent|increased)",
         {ENLARGED_CM: 1.0, CARDIOMEGALY: 1.0}),
    ]),
    (CM_SUBJECT, [
        (_BORDERLINE, {ENLARGED_CM: UNCERTAIN}),
        (_NORMAL, {ENLARGED_CM: NEGATIVE}),
        (_STABLE, {ENLARGED_CM: UNCERTAIN}),
        (r"(?:enlarged|enlargement|large|widened|prominent|increased)", {ENLARGED_CM: 1.0}),
    ]),
    (HEART_SUBJECT, [
        (_BORDERLINE, {CARDIOMEGALY: UNCERTAIN}),
        (_NORMAL, {CARDIOMEGALY: NEGATIVE}),
        (_STABLE, {CARDIOMEGALY: UNCERTAIN}),
        (r"(?:enlarged|enlargement|large|increased in size|increased|big)", {CARDIOMEGALY: 1.0}),
        (r"(?:prominent|prominence)", {CARDIOMEGALY: UNCERTAIN}),
    ]),
    (MEDIASTINUM_SUBJECT, [
        (_NORMAL, {ENLARGED_CM: NEGATIVE}),
        (_STABLE, {ENLARGED_CM: UNCERTAIN}),
        (r"(?:widened|widening|wide|enlarged|enlargement|prominent|prominence|increased)",
         {ENLARGED_CM: 1.0}),
    ]),
    (VASCULAR_SUBJECT, [
        (r"(?:congested|engorged|indistinct|increased)", {EDEMA: 1.0}),
        (r"(?:prominent|prominence)", {EDEMA: UNCERTAIN}),
    ]),
]

# Same predicates written before the subject ("normal heart size", "stable mediastinum").
PRE_STATE_PHRASES: list[tuple[str, dict[str, float]]] = [
    (rf"{_ADV}(?:normal|unremarkable|nonenlarged|non enlarged) (?:sized? |in size )?"
     rf"{HEART_AND_MEDIASTINUM}", {CARDIOMEGALY: NEGATIVE, ENLARGED_CM: NEGATIVE}),
    (rf"{_ADV}(?:normal|unremarkable|nonenlarged|non enlarged) (?:sized? |in size )?{CM_SUBJECT}",
     {ENLARGED_CM: NEGATIVE}),
    (rf"(?:normal|unremarkable|nonenlarged|non enlarged) (?:sized? )?{HEART_SUBJECT}",
     {CARDIOMEGALY: NEGATIVE}),
    (rf"(?:stable|unchanged) (?!normal)(?:sized? )?{HEART_SUBJECT}", {CARDIOMEGALY: UNCERTAIN}),
    (rf"(?:stable|unchanged) (?!normal)(?:appearance of (?:the )?)?(?:{CM_SUBJECT}"
     rf"|{MEDIASTINUM_SUBJECT})", {ENLARGED_CM: UNCERTAIN}),
    (rf"borderline {_ADV}(?:sized? )?{HEART_SUBJECT}", {CARDIOMEGALY: UNCERTAIN}),
    (rf"prominent {_ADV}{HEART_SUBJECT}", {CARDIOMEGALY: UNCERTAIN}),
    (rf"(?<!non )(?:enlarged|widened|prominent) {_ADV}{CM_SUBJECT}", {ENLARGED_CM: 1.0}),
    (rf"{CM_SUBJECT} enlargement", {ENLARGED_CM: 1.0}),
    (rf"(?:normal|unremarkable|non ?widened|non ?enlarged) {MEDIASTINUM_SUBJECT}",
     {ENLARGED_CM: NEGATIVE}),
    (rf"prominent {_ADV}(?:central )?{VASCULAR_SUBJECT}", {EDEMA: UNCERTAIN}),
    (r"prominence of the (?:central )?(?:pulmonary )?(?:vasculature|vessels|vascularity)",
     {EDEMA: UNCERTAIN}),
]

# Words between a subject and its predicate that show the predicate belongs to another organ.
OTHER_ORGAN = (r"\b(?:lungs?|pleura|pleural|bones?|osseous|bony|aorta|aortic|trachea|spine"
               r"|diaphragms?|hemidiaphragms?|hila|hilar|vascularity|vasculature|soft tissues)\b")
STATE_WINDOW = 9  # words between subject and predicate

# --------------------------------------------------------------------------------------------
# Scope. A clause ends at these words/phrases; cues never reach across them.
# --------------------------------------------------------------------------------------------
BREAKS = (r"\b(?:but|however|although|though|whereas|while|which|who|except|aside from|apart from"
          r"|other than|with the exception of|there|otherwise|in addition|additionally"
          r"|because|since|given|and the"
          r"|(?<!compatible )(?<!consistent )(?<!associated )(?<!along )(?<!together )"
          r"(?<!clinically )(?<!correlate )(?<!correlation )(?<!correlated )with)\b")

# --------------------------------------------------------------------------------------------
# Cues.
# --------------------------------------------------------------------------------------------
_EXCLUDE = (r"(?:be )?(?:entirely |completely |totally |definitely |definitively |fully )?"
            r"(?:excluded|exclude|ruled out|rule out|eliminated)")
# Negated uncertainty: checked first, always uncertain.
NEG_UNCERTAIN_PRE = (rf"\b(?:cannot|can not|cant|could not|couldnt|may not|unable to|difficult to"
                     rf"|not possible to|impossible to) {_EXCLUDE}\b"
                     r"|\bno evidence to (?:exclude|rule out)\b"
                     # "no new X": CheXpert reads it as uncertain (an old X may remain).
                     r"|\bno new(?: areas? of)?\b")
NEG_UNCERTAIN_POST = (rf"^(?:\S+ ){{0,6}}?(?:(?:is|are|was|were) )?(?:cannot|can not|cant|could not"
                      rf"|couldnt|may not|not|is not|are not|difficult to|hard to|impossible to)"
                      rf" {_EXCLUDE}\b"
                      r"|^(?:\S+ ){0,4}?(?:(?:is|are|was|were) )?not "
                      r"(?:as well|well|clearly|entirely"
                      r"|optimally) (?:seen|visualized|evaluated|assessed|excluded|demonstrated)\b"
                      r"|^(?:\S+ ){0,4}?(?:(?:is|are|was|were) )?(?:poorly|incompletely) "
                      r"(?:seen|visualized|evaluated|assessed)\b")

# Cue phrases that look negative but are not ("no change in the cardiomegaly").
PSEUDO_NEGATION = (r"\b(?:no|without|not) (?:(?:significant|interval|appreciable|substantial"
                   r"|definite|further|other|real|major|much) )*(?:change|changes|changed"
                   r"|increase|increased|decrease|decreased|progression|worsening|worsened"
                   r"|improvement|improved|difference|enlargement of the previously)\b"
                   r"|\bnot only\b|\bno longer\b(?= (?:changed|increased))|\bgram negative\b")

NEGATION_PRE = (r"\b(?:no|not|without|negative for|free of|clear of|absence of|absent|resolution of"
                r"|resolved|removal of|removed|rather than|ruled out|excluded|nor|neither|lack of"
                r"|lacks|no longer|never|nonenlarged|resolving of|interval clearing of"
                r"|no xxxx of|clear(?=\s*$))\b")
NEGATION_WINDOW = 16

NEGATION_POST = (r"^(?:\S+ ){0,5}?(?:(?:is|are|was|were|has been|have been) )?(?:not|no longer)"
                 r" (?:(?:currently|definitely|clearly|convincingly|radiographically|well) )?"
                 r"(?:seen|identified|visualized|visible|present|evident|appreciated|demonstrated"
                 r"|noted|detected|apparent|identifiable|shown|observed)\b"
                 r"|^(?:\S+ ){0,6}?(?:(?:has|have) )?(?:(?:since|now|interval|completely) )?"
                 r"(?:resolved|cleared|been removed|removed|removal|absent)\b"
                 r"|^(?:\S+ ){0,3}?(?:is|are) negative\b"
                 r"|^(?:\S+ ){0,3}?(?:(?:is|are|appears?|remains?) )?within (?:the )?"
                 r"(?:limits of )?normal\b")

UNCERTAINTY_PRE = (r"\b(?:possible|possibly|probable|probably|likely|unlikely|questionable|question"
                   r"|questioned|suspect|suspected|suspicious|suspicion|suggest|suggests|suggested"
                   r"|suggesting|suggestive|concern|concerning|worrisome|may|might|could|would"
                   r"|differential|versus|vs|and or|andor|presumed|presumably|presumptive|perhaps"
                   r"|maybe|borderline|equivocal|(?<!age )indeterminate"
                   r"|uncertain(?! (?:age|acuity|chronicity|etiology|significance))"
                   r"|rule out|r o|ro"
                   r"|evaluate for|evaluation for|assess for|to exclude|correlate|correlation"
                   r"|favor|favored|favour|favoured|favoring|favouring|consider|considered"
                   r"|suggestion|cannot exclude"
                   r"|xxxx represent|xxxx representing|xxxx represents|xxxx reflecting"
                   r"|xxxx reflects|most xxxx|less likely|more likely|not certain)\b")
UNCERTAINTY_WINDOW = 10
# Cues whose scope is the rest of the clause ("differential diagnosis includes A, B and C").
UNCERTAINTY_LONG = r"\b(?:differential|differentials|versus|vs)\b"

UNCERTAINTY_POST = (
    # after a verb: "pneumonia is also possible", "an effusion is suspected"
    r"^(?:\S+ ){0,6}?(?:is|are|was|were|be|appears?|remains?) (?:\S+ )?(?:possible|possibly|likely"
    r"|probable|probably|suspected|questioned|questionable|suggested|favored|considered"
    r"|a consideration|in the differential|less likely|more likely|not certain|uncertain|unlikely"
    r"|present or|a possibility)\b"
    # right after the mention: "effusion versus atelectasis", "atelectasis and/or infiltrate"
    r"|^(?:\S+ ){0,3}?(?:versus|vs|and or|andor|or possibly|or less likely|or more likely"
    r"|suspected|questioned|could be present|may be present|not excluded)\b")

# A mention followed by this is a disclaimer, not a statement: it is dropped
# ("please note that fractures may not be demonstrated").
IGNORE_POST = (r"^(?:\S+ ){0,2}?(?:may|might|can|could|would) not be (?:\S+ )?(?:demonstrated|seen"
               r"|visible|detected|apparent|evident|identified|visualized)\b")

# Words that join two mentions so that a cue after the second also covers the first
# ("effusion or pneumothorax is not seen"); without one, a mention's post-cues stop at the next
# mention ("consolidation superimposed infection cannot be excluded").
CONNECTORS = r"\b(?:and|or|nor|versus|vs|andor|as well as|plus)\b"

# Uncertainty words that start a new noun phrase: after a negation cue they end its scope
# ("no pneumothorax, possible small effusion").
UNCERTAINTY_RESETS = (r"\b(?:possible|possibly|probable|probably|likely|questionable|suspected"
                      r"|may|might|could|presumed)\b")
# Words that assert presence; they end a negation (or uncertainty) scope unless they directly
# follow the cue ("no increasing effusion" stays negative).
STATUS_RESETS = (r"\b(?:stable|persistent|persisting|unchanged|redemonstrated|again|increased"
                 r"|increasing|decreased|decreasing|improved|improving|worsened|worsening"
                 r"|is|are|was|were|appears|appear|remains|remain|demonstrates|shows|represents"
                 r"|representing|reflects|reflecting)\b")
# Relational cues that keep a negation alive over a copula ("no findings are present to
# suggest pneumonia").
NEGATION_KEEPERS = (r"\b(?:to suggest|suggestive of|to indicate|indicative of|consistent with"
                    r"|compatible with|typical of|characteristic of|diagnostic of|concerning for"
                    r"|suspicious for|worrisome for|specific for)\b")
