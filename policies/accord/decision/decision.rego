# Access decisions: may the caller receive these fields of these subjects (or this
# aggregate) for this purpose under this agreement?
#
# Entrypoints (see policies/README.md and policies/schemas/ for the contract):
# - data.accord.decision.result: the decision on one request (always an object);
# - data.accord.decision.grouped: the decisions on several requests that differ only in
#   their subjects, one per entry of input.group, each exactly what `result` answers for
#   that entry's subjects; undefined unless the requests pass every request-level rule
#   (the service then asks `result` for each).
#
# A pure function of `input`: the service supplies the clock (input.now_ns, integer
# nanoseconds), the agreement, the ethics review and the consents. Every deny reason is
# written in the "required condition is not proven" form (`not <condition>`), so a missing
# or malformed value denies instead of allowing.
#
# Cost (see "Performance" in policies/README.md): every rule evaluated costs about as much
# as a dozen expressions, so a request that passes every request-level rule is proven in
# the body of one rule (`allowed`), on local variables, and its subjects are decided by
# their consents (allowed, or denied with their reasons) in `decided`; only when that body
# fails, for a request-level reason, is the full definition (`explained`) evaluated, which
# works out the request's reasons and their messages. Both decide the subjects with the
# same functions (covering_pairs, unconsented_among, subject_results), whose per-subject
# and per-consent loops read their arguments rather than rules. `grouped` proves the
# request-level rules, and judges the forms of consent, once for all its requests.
package accord.decision

import rego.v1

import data.accord.lib

# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------

# A request that passes every request-level rule is decided by `decided`; any other by
# `explained`. Keep the two in step: when `allowed` holds, `explained` must give the same
# document (the Rego tests and the property tests in tests/policies/test_contract.py
# compare them on every input).
result := decided(facts, requested, unconsented_among(requested, facts.consent_applies, facts.consents, facts.now, facts.covering)) if {
	facts := allowed
	requested := [subject | input.request.kind == "subjects"; some subject in input.request.subjects]
} else := explained

# One result per entry of input.group (a list of subject lists; input.request.subjects is
# not read): each is what `result` answers for the same input with request.subjects set to
# that entry (consents keyed by subject, so the consents of every entry's subjects can
# share one input). Undefined unless the request passes every request-level rule. The
# subjects without a valid consent are found in one pass over every entry's subjects.
grouped := [decided(facts, requested, {subject | some subject in requested; unconsented[subject]}) | some requested in input.group] if {
	input.request.kind == "subjects"
	is_array(input.group)
	facts := allowed
	unconsented := unconsented_among([subject | some requested in input.group; some subject in requested], facts.consent_applies, facts.consents, facts.now, facts.covering)
}

# The result of a request that passed every request-level rule (`facts`, from `allowed`),
# for these subjects, `unconsented` those of them without a valid consent (when consent
# applies; from unconsented_among): allowed unless there are any; each subject decided as
# `explained` decides it. The allowed document is written out here, as subjects_summary
# and subject_results would give it: a function called costs more than the document.
decided(facts, requested, unconsented) := {
	"allow": true,
	"reasons": [],
	"obligations": facts.obligations,
	"subjects": [{"subject": subject, "allow": true, "reasons": []} | some subject in requested],
} if {
	unconsented == set()
} else := {
	"allow": false,
	"reasons": subjects_summary(requested, unconsented),
	"obligations": facts.obligations,
	"subjects": subject_results(requested, unconsented, facts.consents, facts.now, facts.purposes, facts.categories, set()),
}

# The allowed-request path: the request-level facts `decided` needs, defined only when the
# request passes every request-level rule, proven in this one body (a rule evaluated costs
# more than the few expressions most of these facts take). It restates the checks of
# request_ok below: the agreement in force, the caller a recipient, some requested field
# permitted for the purpose or an ancestor, no strict minimisation dropping a field, an
# aggregate cohort proven large enough, an approving review in force or no sensitive
# permitted field.
allowed := {
	"obligations": {
		"permitted_fields": sort(granted),
		"dropped_fields": sort(trimmed),
		"pseudonymise": [1 | terms.pseudonymisation_required == true] != [],
		"retention_days": object.get(terms, "retention_days", null),
		"min_cohort": object.get(terms, ["minimisation", "min_cohort"], null),
		"ethics_conditions": conditions,
	},
	"consent_applies": consent_applies,
	"consents": object.get(input, "consents", {}),
	"covering": covering_pairs(consent_applies, object.get(input, "consents", {}), purposes, categories),
	"now": now,
	"purposes": purposes,
	"categories": categories,
} if {
	terms := input.agreement
	terms.status == "active"
	now := input.now_ns
	terms.valid_from_ns <= now
	now < terms.valid_until_ns
	input.principal.organisation in terms.recipients
	fields := input.request.fields
	is_array(fields)
	codes := input.purpose_lineage
	is_array(codes)
	purposes := {code | some code in codes}
	granted := {field |
		some entry in terms.purposes
		entry.purpose in purposes
		some field in entry.fields
		field in fields
	}
	granted != set()
	kind := input.request.kind
	consent_applies := [1 |
		kind == "subjects"
		({1 | terms.consent_required == true} | {1 | terms.legal_basis == "consent"}) != set()
	] != []
	catalogue := object.get(input, "catalogue", {})
	categories := [cats |
		some name in granted
		cats := {code | some code in catalogue[name].category_lineage} | {code |
			code := catalogue[name].category
			is_string(code)
		}
	]
	trimmed := {field | some field in fields; not granted[field]}
	[1 | trimmed != set(); not terms.minimisation.mode == "trim"] == []
	[1 |
		kind == "aggregate"
		[1 |
			is_number(input.request.cohort_size)
			input.request.cohort_size >= terms.minimisation.min_cohort
		] == []
	] == []
	review_ok := [1 |
		input.ethics_review.outcome in {"approved", "approved_with_conditions"}
		input.ethics_review.valid_from_ns <= now
		now < input.ethics_review.valid_until_ns
	] != []
	[1 |
		not review_ok
		lib.sensitive_fields(
			object.get(input, "catalogue", {}),
			object.get(input, "sensitive_categories", []),
			granted,
		) != set()
	] == []
	[1 | review_ok; not is_array(object.get(input.ethics_review, "conditions", []))] == []
	conditions := [condition | review_ok; some condition in object.get(input.ethics_review, "conditions", [])]
}

# The full definition: every reason, with its message, for the request and each subject.
explained := {
	"allow": allow,
	"reasons": reasons,
	"obligations": obligations,
	"subjects": subjects,
}

# Deny unless proven allowed: no request-level reason, and every subject allowed.
default allow := false

allow if {
	request_ok
	subjects_ok
}

# Request-level reasons sorted by code (one per code); else the summary of the denied
# subjects; else none.
reasons := [{"code": code, "message": request_reasons[code]} | some code in sort(object.keys(request_reasons))] if {
	not request_ok
} else := subjects_summary(input.request.subjects, unconsented_subjects)

# "some_subjects_denied", with how many of the subjects are denied (an allowed request's
# subjects are denied only for their consent), or nothing when none is.
subjects_summary(subjects, unconsented) := [] if {
	unconsented == set()
} else := [{"code": "some_subjects_denied", "message": msg}] if {
	denied := count([1 | some subject in subjects; unconsented[subject]])
	msg := sprintf("%d of %d subjects were denied", [denied, count(subjects)])
}

# No request-level reason (request_denials, below, is empty).
#
# The first body proves it directly, because that is cheap: the agreement is active and in
# force, the caller is a recipient, some requested field is permitted (so the purpose is
# known and permitted), and none of these holds: strict minimisation dropping a field, an
# aggregate cohort not proven large enough, a sensitive permitted field without an
# approving review in force. Only when it fails are the reasons worked out, and then they
# alone decide. Keep the two in step: no request_denials rule may hold when this body
# does (the Rego tests and the reference model in tests/policies/test_contract.py check
# that they agree).
request_ok := true if {
	agreement.status == "active"
	agreement.valid_from_ns <= input.now_ns
	input.now_ns < agreement.valid_until_ns
	input.principal.organisation in agreement.recipients
	permitted != set()
	[1 | dropped != set(); not agreement.minimisation.mode == "trim"] == []
	[1 | input.request.kind == "aggregate"; not cohort_sufficient] == []
	[1 | not review_valid; not sensitive_permitted == set()] == []
} else := count(request_denials) == 0

# ---------------------------------------------------------------------------------------
# Facts computed once per evaluation
# ---------------------------------------------------------------------------------------

# The agreement, when there is one (undefined otherwise).
agreement := input.agreement if is_object(input.agreement)

# The requested purpose and its ancestors; permitting an ancestor permits the purpose.
# (An array as a set, anything else as the empty set, as lib.as_set.)
lineage := {code | codes := input.purpose_lineage; is_array(codes); some code in codes}

# The requested fields listed under any agreement purpose that is the requested purpose
# or one of its ancestors; the other requested fields are dropped. (A request whose fields
# are not an array requests nothing.)
permitted := {field |
	fields := input.request.fields
	is_array(fields)
	some entry in agreement.purposes
	entry.purpose in lineage
	some field in entry.fields
	field in fields
}

dropped := {field |
	fields := input.request.fields
	is_array(fields)
	some field in fields
	not permitted[field]
}

sensitive_permitted := lib.sensitive_fields(
	object.get(input, "catalogue", {}),
	object.get(input, "sensitive_categories", []),
	permitted,
)

# The category codes of each permitted field (own category plus ancestors).
permitted_categories := lib.categories_of(object.get(input, "catalogue", {}), permitted)

default purpose_permitted := false

purpose_permitted if {
	some entry in agreement.purposes
	entry.purpose in lineage
}

default strict := true

strict := false if agreement.minimisation.mode == "trim"

default cohort_sufficient := false

cohort_sufficient if {
	is_number(input.request.cohort_size)
	input.request.cohort_size >= agreement.minimisation.min_cohort
}

# An approving ethics review in force at now_ns.
review_valid if {
	input.ethics_review.outcome in {"approved", "approved_with_conditions"}
	input.ethics_review.valid_from_ns <= input.now_ns
	input.now_ns < input.ethics_review.valid_until_ns
}

# ---------------------------------------------------------------------------------------
# Request-level reasons: a set of {"code", "message"}, at most one per code. Only
# evaluated for a request that request_ok's first body does not let through.
# ---------------------------------------------------------------------------------------

# code -> message. A caller that is not a recipient of the agreement is told only that:
# the agreement's other reasons would disclose its terms (permitted fields, minimum cohort,
# sensitive fields, status) to an organisation that is not party to it.
request_reasons := {denial.code: denial.message |
	some denial in request_denials
	denial.code == "caller_not_recipient"
} if {
	agreement
	not disclosed
} else := {denial.code: denial.message | some denial in request_denials}

# The caller is a recipient of the agreement: only then does the answer disclose the
# agreement's terms (reasons, obligations) and its subjects' consents.
default disclosed := false

disclosed if input.principal.organisation in agreement.recipients

# Agreement in force.
request_denials contains {"code": "agreement_not_found", "message": "No agreement was found for this request"} if {
	not agreement
}

request_denials contains {"code": "agreement_suspended", "message": "The agreement is suspended"} if {
	agreement.status == "suspended"
}

request_denials contains {"code": "agreement_not_active", "message": msg} if {
	agreement
	not agreement.status in {"active", "suspended"}
	msg := sprintf("The agreement is not active (status: %s)", [label(object.get(agreement, "status", null))])
}

request_denials contains {"code": "agreement_not_yet_valid", "message": "The agreement is not yet valid"} if {
	agreement
	not agreement.valid_from_ns <= input.now_ns
}

request_denials contains {"code": "agreement_expired", "message": "The agreement validity period has ended"} if {
	agreement
	not input.now_ns < agreement.valid_until_ns
}

# Caller.
request_denials contains {"code": "caller_not_recipient", "message": msg} if {
	agreement
	not input.principal.organisation in agreement.recipients
	msg := sprintf(
		"Organisation %s is not a recipient under this agreement",
		[label(object.get(object.get(input, "principal", {}), "organisation", null))],
	)
}

# Purpose.
request_denials contains {"code": "purpose_unknown", "message": msg} if {
	count(lineage) == 0
	msg := sprintf("Purpose %s is not in the purpose taxonomy", [label(object.get(object.get(input, "request", {}), "purpose", null))])
}

request_denials contains {"code": "purpose_not_permitted", "message": msg} if {
	agreement
	count(lineage) > 0
	not purpose_permitted
	msg := sprintf("Purpose %s is not permitted by the agreement", [label(object.get(object.get(input, "request", {}), "purpose", null))])
}

# Minimisation. Only judged once the purpose is permitted (otherwise purpose_not_permitted
# already explains why nothing may flow).
request_denials contains {"code": "fields_not_permitted", "message": msg} if {
	purpose_permitted
	strict
	count(dropped) > 0
	msg := sprintf("Fields not permitted for this purpose: %s", [concat(", ", sort(dropped))])
}

request_denials contains {"code": "no_permitted_fields", "message": "None of the requested fields is permitted for this purpose"} if {
	purpose_permitted
	count(permitted) == 0
	not strict_dropped
}

strict_dropped if {
	strict
	count(dropped) > 0
}

request_denials contains {"code": "cohort_below_minimum", "message": cohort_problem} if {
	agreement
	input.request.kind == "aggregate"
}

cohort_problem := "The cohort size is missing" if {
	not is_number(input.request.cohort_size)
} else := msg if {
	not input.request.cohort_size >= agreement.minimisation.min_cohort
	msg := sprintf(
		"Cohort size %v is below the minimum of %v",
		[object.get(input.request, "cohort_size", null), object.get(agreement.minimisation, "min_cohort", null)],
	)
}

# Ethics: needed when any permitted field is sensitive.
default ethics_required := false

ethics_required if count(sensitive_permitted) > 0

default review_present := false

review_present if is_object(input.ethics_review)

default review_approving := false

review_approving if input.ethics_review.outcome in {"approved", "approved_with_conditions"}

default review_in_force := false

review_in_force if {
	input.ethics_review.valid_from_ns <= input.now_ns
	input.now_ns < input.ethics_review.valid_until_ns
}

request_denials contains {"code": "ethics_review_missing", "message": msg} if {
	ethics_required
	not review_present
	msg := sprintf("An ethics review is required for sensitive fields: %s", [concat(", ", sort(sensitive_permitted))])
}

request_denials contains {"code": "ethics_review_rejected", "message": "The ethics review did not approve this sharing"} if {
	ethics_required
	review_present
	not review_approving
}

request_denials contains {"code": "ethics_review_not_valid", "message": "The ethics review is not valid at this time"} if {
	ethics_required
	review_present
	not review_in_force
}

# A name or code for a message: the string itself, else "(none)".
label(x) := x if {
	is_string(x)
} else := "(none)"

# ---------------------------------------------------------------------------------------
# Obligations
# ---------------------------------------------------------------------------------------

# The agreement's, for a caller that is a recipient; none for any other caller (no
# agreement, or one it is not party to).
obligations := {
	"permitted_fields": sort(permitted),
	"dropped_fields": sort(dropped),
	"pseudonymise": [1 | agreement.pseudonymisation_required == true] != [],
	"retention_days": object.get(agreement, "retention_days", null),
	"min_cohort": object.get(agreement, ["minimisation", "min_cohort"], null),
	"ethics_conditions": ethics_conditions,
} if {
	disclosed
} else := {
	"permitted_fields": [],
	"dropped_fields": [],
	"pseudonymise": false,
	"retention_days": null,
	"min_cohort": null,
	"ethics_conditions": [],
}

# The conditions of an approving review in force at now_ns, whether or not one is needed.
ethics_conditions := object.get(input.ethics_review, "conditions", []) if {
	review_valid
} else := []

# ---------------------------------------------------------------------------------------
# Subjects (kind "subjects"): one result per requested subject, in request order.
#
# A subject is allowed when the request is allowed and the subject's consent passes
# (always, when consent does not apply). The work is linear in subjects and consents:
#   1. covering_pairs judges the purposes and categories of each distinct form of consent
#      once; then unconsented_among, one pass over the requested subjects and their
#      consents, finds the subjects without a valid one;
#   2. if the request is allowed and there are none, every subject gets the same allowed
#      entry;
#   3. otherwise each denied subject gets a key (consent_keys): the facts of its consents,
#      what the consent rules look at, with the times already judged ("missing" when it has
#      no consent record); a subject with a valid consent has the key "ok". The reason list
#      of each distinct key is worked out once, and each subject's entry is two map lookups.
# Both `result`'s allowed-request path and `explained` use these functions, on their own
# copies of the request-level facts.
# ---------------------------------------------------------------------------------------

subjects := [] if {
	not input.request.kind == "subjects"
} else := subject_results(
	input.request.subjects,
	unconsented_subjects,
	object.get(input, "consents", {}),
	object.get(input, "now_ns", null),
	lineage,
	permitted_categories,
	request_denied_codes,
) if {
	disclosed
} else := [{"subject": subject, "allow": false, "reasons": denied} |
	# Not a recipient (or no agreement): nothing of the subjects' consents is disclosed.
	denied := subject_reasons({"request_denied"})
	some subject in input.request.subjects
]

# Every requested subject passes the consent rules.
subjects_ok := unconsented_subjects == set()

# Consent is required when the agreement says so or its legal basis is consent.
default consent_applies := false

consent_applies if {
	input.request.kind == "subjects"
	({1 | agreement.consent_required == true} | {1 | agreement.legal_basis == "consent"}) != set()
}

default unconsented_subjects := set()

unconsented_subjects := unconsented_among(
	input.request.subjects,
	consent_applies,
	object.get(input, "consents", {}),
	input.now_ns,
	covering_pairs(consent_applies, object.get(input, "consents", {}), lineage, permitted_categories),
)

# The subjects without a valid consent, when consent applies, in one pass over the subjects
# and their consents. A consent is valid when it is given, has started, for a minor was
# given by a guardian, has not ended, and its [purposes, categories] pair is `covering`
# (see covering_pairs). This is the hot loop of a batch. A consent is valid here exactly
# when consent_problems (below) finds nothing wrong with its facts; keep the two in step
# (the reference model in tests/policies/test_contract.py checks both).
unconsented_among(subjects, applies, consents, now, covering) := {subject |
	applies
	some subject in subjects
	[consent |
		some consent in consents[subject]
		consent.status == "given"
		consent.valid_from_ns <= now
		[1 | not consent.subject_is_minor == false; not consent.guardian == true] == []
		[1 | consent.valid_until_ns != null; not now < consent.valid_until_ns] == []
		covering[[consent.purposes, consent.categories]]
	] == []
}

# The distinct [purposes, categories] pairs of these consents (an object of subject ->
# consent list) that cover the purpose or an ancestor (`purposes`: the purpose and its
# ancestors) and the category or an ancestor of every permitted field (`categories`: one
# set per permitted field, its category and their ancestors). Consents collected under
# one form share a pair, so each distinct pair is judged once, not each consent: a
# quarter of a batch's evaluation, and `grouped` judges the pairs of all its requests'
# consents at once. A consent without either key has no pair, and is not valid. Nothing
# is judged where consent does not apply (`applies` false).
covering_pairs(applies, consents, purposes, categories) := {pair |
	applies
	some pair in {[consent.purposes, consent.categories] | some records in consents; some consent in records}
	[purpose | some purpose in pair[0]; purposes[purpose]] != []
	every cats in categories {
		some code in pair[1]
		cats[code]
	}
}

# Each subject's result: allowed when it is not among `unconsented` and the request-level
# codes `denied` are empty; otherwise its reasons, those codes with its consent codes.
subject_results(subjects, unconsented, consents, now, purposes, categories, denied) := [{"subject": subject, "allow": true, "reasons": []} |
	some subject in subjects
] if {
	unconsented == set()
	denied == set()
} else := [{"subject": subject, "allow": listed == [], "reasons": listed} |
	some subject in subjects
	listed := lists[object.get(keys, subject, "ok")]
] if {
	keys := consent_keys(unconsented, consents, now)
	lists := {key: subject_reasons(key_codes(key, purposes, categories) | denied) |
		some key in {facts | some _, facts in keys} | {"ok" | count(keys) < count(subjects)}
	}
}

# ---------------------------------------------------------------------------------------
# Denied subjects: only evaluated when some subject is denied
# ---------------------------------------------------------------------------------------

# subject -> key, for each subject without a valid consent: "missing" for a subject
# without a consent record, else the facts of each of its consents, in order. The facts of
# a consent are what consent_problems looks at, with the times already judged at `now`, so
# subjects whose consents differ only in ids and dates share a key, and each distinct key
# is explained once (subject_results). A (schema-invalid) consent lacking a key its facts
# need has no facts: it explains nothing, and consent_invalid covers a subject left
# without any.
consent_keys(unconsented, consents, now) := object.union(
	{subject: "missing" | some subject in unconsented; not consents[subject]},
	{subject: [[
		consent.status,
		consent.valid_from_ns <= now,
		[1 | consent.valid_until_ns != null; not now < consent.valid_until_ns] != [],
		consent.purposes,
		consent.categories,
		consent.subject_is_minor,
		consent.guardian,
	] |
		some consent in records
	] |
		some subject in unconsented
		records := consents[subject]
	},
)

# The consent codes of the subjects with a key: none for "ok"; consent_missing without a
# consent record; else why none of its consents is valid (`purposes` and `categories` as
# in unconsented_among).
key_codes("ok", _, _) := set()

key_codes("missing", _, _) := {"consent_missing"}

key_codes(facts, purposes, categories) := consents_problems(facts, purposes, categories) if is_array(facts)

# The union of the problems of each consent (never empty: consent_invalid if nothing else
# applies, e.g. an unrecognised status).
consents_problems(facts, purposes, categories) := codes if {
	codes := {code | some consent in facts; some code in consent_problems(consent, purposes, categories)}
	codes != set()
} else := {"consent_invalid"}

# What is wrong with one consent, given its facts (nothing for a valid consent).
consent_problems([status, started, ended, consent_purposes, consent_categories, subject_is_minor, guardian], purposes, categories) := (
	{"consent_withdrawn" | status == "withdrawn"}
	| {"consent_refused" | status == "refused"}
	| {"consent_expired" | status == "expired"}
	| {"consent_expired" | ended == true}
	| {"consent_not_yet_valid" | not started == true}
	| {"consent_purpose_not_covered" | count({p | some p in consent_purposes; p in purposes}) == 0}
	| {"consent_categories_not_covered" |
		some cats in categories
		count({code | some code in consent_categories; code in cats}) == 0
	}
	| {"guardian_consent_missing" | not subject_is_minor == false; not guardian == true}
)

request_denied_codes := set() if {
	request_ok
} else := {"request_denied"}

subject_reasons(codes) := [{"code": code, "message": subject_messages[code]} | some code in sort(codes)]

subject_messages := {
	"request_denied": "The request was denied; see the request-level reasons",
	"consent_missing": "No consent is recorded for this subject",
	"consent_withdrawn": "The subject withdrew consent",
	"consent_refused": "The subject refused consent",
	"consent_expired": "The subject's consent has expired",
	"consent_not_yet_valid": "The subject's consent is not yet valid",
	"consent_purpose_not_covered": "The subject's consent does not cover this purpose",
	"consent_categories_not_covered": "The subject's consent does not cover the categories of the permitted fields",
	"guardian_consent_missing": "The subject is a minor and no guardian consent is recorded",
	"consent_invalid": "The subject's consents are not valid",
}
