# Access decisions: may the caller receive these fields of these subjects (or this
# aggregate) for this purpose under this agreement?
#
# Entrypoint: data.accord.decision.result (always an object; see policies/README.md and
# policies/schemas/decision_*.schema.json for the contract).
#
# A pure function of `input`: the service supplies the clock (input.now_ns, integer
# nanoseconds), the agreement, the ethics review and the consents. Every deny reason is
# written in the "required condition is not proven" form (`not <condition>`), so a missing
# or malformed value denies instead of allowing.
package accord.decision

import rego.v1

import data.accord.lib

# ---------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------

result := {
	"allow": allow,
	"reasons": reasons,
	"obligations": obligations,
	"subjects": subjects,
}

# Deny unless proven allowed: no request-level reason, and every subject allowed.
default allow := false

allow if {
	count(all_reasons) == 0
	denied_subjects == 0
}

reasons := [{"code": code, "message": all_reasons[code]} | some code in sort(object.keys(all_reasons))]

all_reasons := object.union(request_reasons, subject_summary)

default request_ok := false

request_ok if count(request_denials) == 0

# ---------------------------------------------------------------------------------------
# Facts computed once per evaluation
# ---------------------------------------------------------------------------------------

now := input.now_ns

default agreement_known := false

agreement_known if is_object(input.agreement)

agreement := input.agreement if agreement_known

# The requested purpose and its ancestors; permitting an ancestor permits the purpose.
lineage := lib.as_set(object.get(input, "purpose_lineage", []))

requested := lib.as_set(object.get(request, "fields", []))

request := object.get(input, "request", {})

catalogue := object.get(input, "catalogue", {})

sensitive_categories := lib.as_set(object.get(input, "sensitive_categories", []))

default purpose_permitted := false

purpose_permitted if {
	some entry in agreement.purposes
	entry.purpose in lineage
}

# Every field any agreement purpose covering the requested purpose lets flow.
agreement_fields := {field |
	some entry in agreement.purposes
	entry.purpose in lineage
	some field in entry.fields
}

permitted := requested & agreement_fields

dropped := requested - permitted

default strict := true

strict := false if agreement.minimisation.mode == "trim"

sensitive_permitted := {field |
	some field in permitted
	lib.sensitive_field(catalogue, sensitive_categories, field)
}

# The category codes of each permitted field (own category plus ancestors).
permitted_categories := [lib.field_categories(catalogue, field) | some field in permitted]

# ---------------------------------------------------------------------------------------
# Request-level reasons: a set of {"code", "message"}, at most one per code
# ---------------------------------------------------------------------------------------

# code -> message
request_reasons := {denial.code: denial.message | some denial in request_denials}

# Agreement in force.
request_denials contains {"code": "agreement_not_found", "message": "No agreement was found for this request"} if {
	not agreement_known
}

request_denials contains {"code": "agreement_suspended", "message": "The agreement is suspended"} if {
	agreement.status == "suspended"
}

request_denials contains {"code": "agreement_not_active", "message": msg} if {
	agreement_known
	not agreement.status in {"active", "suspended"}
	msg := sprintf("The agreement is not active (status: %s)", [label(object.get(agreement, "status", null))])
}

request_denials contains {"code": "agreement_not_yet_valid", "message": "The agreement is not yet valid"} if {
	agreement_known
	not agreement.valid_from_ns <= now
}

request_denials contains {"code": "agreement_expired", "message": "The agreement validity period has ended"} if {
	agreement_known
	not now < agreement.valid_until_ns
}

# Caller.
request_denials contains {"code": "caller_not_recipient", "message": msg} if {
	agreement_known
	not input.principal.organisation in agreement.recipients
	msg := sprintf(
		"Organisation %s is not a recipient under this agreement",
		[label(object.get(object.get(input, "principal", {}), "organisation", null))],
	)
}

# Purpose.
request_denials contains {"code": "purpose_unknown", "message": msg} if {
	count(lineage) == 0
	msg := sprintf("Purpose %s is not in the purpose taxonomy", [label(object.get(request, "purpose", null))])
}

request_denials contains {"code": "purpose_not_permitted", "message": msg} if {
	agreement_known
	count(lineage) > 0
	not purpose_permitted
	msg := sprintf("Purpose %s is not permitted by the agreement", [label(object.get(request, "purpose", null))])
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
	agreement_known
	request.kind == "aggregate"
}

cohort_problem := "The cohort size is missing" if {
	not is_number(request.cohort_size)
} else := msg if {
	not request.cohort_size >= agreement.minimisation.min_cohort
	msg := sprintf(
		"Cohort size %v is below the minimum of %v",
		[object.get(request, "cohort_size", null), object.get(agreement.minimisation, "min_cohort", null)],
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
	input.ethics_review.valid_from_ns <= now
	now < input.ethics_review.valid_until_ns
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

obligations := {
	"permitted_fields": permitted_fields,
	"dropped_fields": dropped_fields,
	"pseudonymise": pseudonymise,
	"retention_days": retention_days,
	"min_cohort": min_cohort,
	"ethics_conditions": ethics_conditions,
}

permitted_fields := sort(permitted) if {
	agreement_known
} else := []

dropped_fields := sort(dropped) if {
	agreement_known
} else := []

default pseudonymise := false

pseudonymise if agreement.pseudonymisation_required == true

retention_days := agreement.retention_days if {
	agreement_known
} else := null

min_cohort := agreement.minimisation.min_cohort if {
	agreement_known
} else := null

# The conditions of an approving review in force at `now`, whether or not one is needed.
ethics_conditions := object.get(input.ethics_review, "conditions", []) if {
	review_present
	review_approving
	review_in_force
} else := []

# ---------------------------------------------------------------------------------------
# Subjects (kind "subjects"): one result per requested subject, in request order.
# Per-subject work is O(consents of that subject); everything else is computed once.
# ---------------------------------------------------------------------------------------

subjects := [{"subject": subject, "allow": count(listed) == 0, "reasons": listed} |
	some subject in request.subjects
	listed := object.get(reasons_by_subject, subject, default_subject_reasons)
] if {
	request.kind == "subjects"
} else := []

# Subject reasons are computed in bulk, once per evaluation, never per pair of subjects:
#   - subjects with a valid consent (or any subject, when consent does not apply) get only
#     request_denied, and only if the request itself is denied;
#   - subjects with consents but none valid get the union of their consents' problems;
#   - subjects with no consent at all get consent_missing.
reasons_by_subject := object.union(consented_reasons, unconsented_reasons)

consented_reasons := {subject: request_denied_reasons | some subject in consented_subjects}

unconsented_reasons := {subject: subject_reasons(codes | request_denied_codes) |
	consent_applies
	some subject, consents in all_consents
	not consented_subjects[subject]
	codes := consents_problems(consents)
}

default_subject_reasons := subject_reasons({"consent_missing"} | request_denied_codes) if {
	consent_applies
} else := request_denied_reasons

request_denied_codes := set() if {
	request_ok
} else := {"request_denied"}

request_denied_reasons := subject_reasons(request_denied_codes)

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

default consent_required := false

consent_required if agreement.consent_required == true

consent_required if agreement.legal_basis == "consent"

default consent_applies := false

consent_applies if {
	request.kind == "subjects"
	consent_required
}

all_consents := object.get(input, "consents", {})

# Subjects with at least one valid consent, in one pass over all consents. A consent is
# valid when it is given, has started, has not ended, covers the purpose (or an ancestor),
# covers the category (or an ancestor) of every permitted field, and, for a minor, has
# guardian consent. Written inline: this is the hot loop of a batch. A consent is valid
# here exactly when consent_problems (below) is empty; keep the two in step (the
# reference model in tests/policies/test_contract.py checks both).
consented_subjects := {subject |
	consent_applies
	some subject, consents in all_consents
	some consent in consents
	consent.status == "given"
	consent.valid_from_ns <= now
	[until | until := consent.valid_until_ns; until != null; not now < until] == []
	some purpose in consent.purposes
	purpose in lineage
	not guardian_missing(consent)
	every cats in permitted_categories {
		some code in consent.categories
		code in cats
	}
}

# Why none of a subject's consents is valid: the union of their problems (never empty:
# consent_invalid if nothing else applies, e.g. an unrecognised status).
consents_problems(consents) := codes if {
	codes := {code | some consent in consents; some code in consent_problems(consent)}
	count(codes) > 0
} else := {"consent_invalid"}

# What is wrong with one consent (empty for a valid consent). Conditions are inline, as
# in consented_subjects: this runs for every consent of every denied subject.
consent_problems(consent) := (
	{"consent_withdrawn" | consent.status == "withdrawn"}
	| {"consent_refused" | consent.status == "refused"}
	| {"consent_expired" | consent.status == "expired"}
	| {"consent_expired" | until := consent.valid_until_ns; until != null; not now < until}
	| {"consent_not_yet_valid" | not consent.valid_from_ns <= now}
	| {"consent_purpose_not_covered" | count({p | some p in consent.purposes; p in lineage}) == 0}
	| {"consent_categories_not_covered" |
		some cats in permitted_categories
		count({code | some code in consent.categories; code in cats}) == 0
	}
	| {"guardian_consent_missing" | guardian_missing(consent)}
)

# A minor (or a consent that does not say) needs guardian consent.
guardian_missing(consent) if {
	not consent.subject_is_minor == false
	not consent.guardian == true
}

# ---------------------------------------------------------------------------------------
# Request-level summary of the subjects
# ---------------------------------------------------------------------------------------

denied_subjects := count([1 | some subject in subjects; subject.allow == false])

subject_summary := {"some_subjects_denied": msg} if {
	request_ok
	denied_subjects > 0
	msg := sprintf("%d of %d subjects were denied", [denied_subjects, count(subjects)])
} else := {}
