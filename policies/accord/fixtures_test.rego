# Shared test fixtures (a *_test.rego module: loaded by the Rego tests, never by the
# service). A schema-valid decision input that is allowed, plus helpers to vary it.
package accord.fixtures

import rego.v1

now := 1700000000000000000

day := 86400000000000

catalogue := {
	# sensitive through its category's ancestor "health"
	"diagnosis": {"category": "health.diagnosis", "category_lineage": ["health.diagnosis", "health"], "sensitive": false},
	"postcode": {"category": "contact.address", "category_lineage": ["contact.address", "contact"], "sensitive": false},
	"email": {"category": "contact.email", "category_lineage": ["contact.email", "contact"], "sensitive": false},
	# sensitive through its own flag, in a category that is not sensitive
	"ethnicity": {"category": "demographics.ethnicity", "category_lineage": ["demographics.ethnicity", "demographics"], "sensitive": true},
	"attainment": {"category": "education.attainment", "category_lineage": ["education.attainment", "education"], "sensitive": false},
}

agreement := {
	"id": "agr-1",
	"version": 2,
	"status": "active",
	"valid_from_ns": now - (30 * day),
	"valid_until_ns": now + (365 * day),
	"providers": ["org-provider"],
	"recipients": ["org-recipient", "org-other-recipient"],
	"legal_basis": "consent",
	"consent_required": true,
	"retention_days": 365,
	"minimisation": {"mode": "strict", "min_cohort": 10},
	"pseudonymisation_required": true,
	"jurisdiction": "EU",
	"purposes": [
		{"purpose": "research", "fields": ["diagnosis", "postcode", "ethnicity"]},
		{"purpose": "service_delivery.care_coordination", "fields": ["email"]},
	],
}

ethics_review := {
	"id": "rev-1",
	"outcome": "approved_with_conditions",
	"conditions": ["publish aggregate results only", "no linkage with other datasets"],
	"reference": "REC/2024/17",
	"valid_from_ns": now - (10 * day),
	"valid_until_ns": now + (100 * day),
}

# A valid consent for the fixture request; `overrides` are merged in.
consent(overrides) := object.union(
	{
		"id": "consent-1",
		"status": "given",
		"purposes": ["research"],
		"categories": ["health", "contact"],
		"valid_from_ns": now - day,
		"valid_until_ns": null,
		"subject_is_minor": false,
		"guardian": false,
	},
	overrides,
)

# Allowed: subjects ps-1 and ps-2, fields diagnosis (sensitive) and postcode, purpose
# research.public_health under the agreement's "research" entry, approving review in force.
subjects_input := {
	"now_ns": now,
	"principal": {"subject": "partner-service", "role": "partner", "organisation": "org-recipient"},
	"request": {
		"kind": "subjects",
		"purpose": "research.public_health",
		"fields": ["diagnosis", "postcode"],
		"subjects": ["ps-1", "ps-2"],
		"cohort_size": null,
	},
	"purpose_lineage": ["research.public_health", "research"],
	"catalogue": {"diagnosis": catalogue.diagnosis, "postcode": catalogue.postcode},
	"sensitive_categories": ["health", "minors"],
	"agreement": agreement,
	"ethics_review": ethics_review,
	"consents": {
		"ps-1": [consent({"id": "consent-1"})],
		"ps-2": [consent({"id": "consent-2"})],
	},
}

# Allowed: an aggregate release of postcode (not sensitive) with a large enough cohort.
aggregate_input := with_key(
	object.union(subjects_input, {"request": {
		"kind": "aggregate",
		"fields": ["postcode"],
		"subjects": [],
		"cohort_size": 25,
	}}),
	"consents", {},
)

# `doc` deep-merged with `overrides` (objects merge, anything else is replaced).
with_(doc, overrides) := object.union(doc, overrides)

# `doc` with `key` replaced wholesale (no deep merge).
with_key(doc, key, value) := object.union(object.remove(doc, [key]), {key: value})

# Subjects input whose consents are exactly `consents` (pseudonym -> list).
with_consents(consents) := with_key(subjects_input, "consents", consents)

# The request-level reason codes of a decision result.
codes(result) := [reason.code | some reason in result.reasons]

# The reason codes of the subject at `index`.
subject_codes(result, index) := [reason.code | some reason in result.subjects[index].reasons]
