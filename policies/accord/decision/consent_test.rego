# Consent rules of data.accord.decision.result (requests of kind "subjects").
package accord.decision_consent_test

import rego.v1

import data.accord.decision
import data.accord.fixtures as fx

# ps-1 carries `consents`; ps-2 keeps a valid consent.
one_subject(consents) := fx.with_consents({
	"ps-1": consents,
	"ps-2": [fx.consent({"id": "consent-2"})],
})

# Decision for a request whose subject ps-1 has `consents`.
decide(consents) := result if {
	inp := one_subject(consents)
	result := decision.result with input as inp
}

denied_with(consents, expected) if {
	result := decide(consents)
	result.allow == false
	fx.codes(result) == ["some_subjects_denied"]
	result.subjects[0].allow == false
	fx.subject_codes(result, 0) == expected
	result.subjects[1] == {"subject": "ps-2", "allow": true, "reasons": []}
}

test_consent_missing if {
	inp := fx.with_consents({"ps-2": [fx.consent({"id": "consent-2"})]})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["some_subjects_denied"]
	result.reasons[0].message == "1 of 2 subjects were denied"
	result.subjects[0].allow == false
	result.subjects[0].reasons == [{"code": "consent_missing", "message": "No consent is recorded for this subject"}]
	result.subjects[1].allow == true
}

test_consent_withdrawn if {
	denied_with([fx.consent({"status": "withdrawn"})], ["consent_withdrawn"])
}

test_consent_refused if {
	denied_with([fx.consent({"status": "refused"})], ["consent_refused"])
}

test_consent_expired_status if {
	denied_with([fx.consent({"status": "expired"})], ["consent_expired"])
}

test_consent_expired_at_valid_until if {
	denied_with([fx.consent({"valid_until_ns": fx.now})], ["consent_expired"])
}

test_consent_valid_until_later_allows if {
	result := decide([fx.consent({"valid_until_ns": fx.now + 1})])
	result.allow == true
}

test_consent_not_yet_valid if {
	denied_with([fx.consent({"valid_from_ns": fx.now + 1})], ["consent_not_yet_valid"])
}

test_consent_valid_from_is_inclusive if {
	result := decide([fx.consent({"valid_from_ns": fx.now})])
	result.allow == true
}

test_consent_purpose_not_covered if {
	denied_with([fx.consent({"purposes": ["service_delivery"]})], ["consent_purpose_not_covered"])
}

test_consent_for_descendant_purpose_does_not_cover_ancestor if {
	# consent to research.public_health.surveillance does not cover research.public_health
	denied_with(
		[fx.consent({"purposes": ["research.public_health.surveillance"]})],
		["consent_purpose_not_covered"],
	)
}

test_consent_for_exact_purpose_covers if {
	result := decide([fx.consent({"purposes": ["research.public_health"]})])
	result.allow == true
}

test_consent_categories_not_covered if {
	# postcode (contact.address) is not covered
	denied_with([fx.consent({"categories": ["health"]})], ["consent_categories_not_covered"])
}

test_consent_categories_covered_by_exact_codes if {
	result := decide([fx.consent({"categories": ["health.diagnosis", "contact.address"]})])
	result.allow == true
}

test_consent_sibling_category_does_not_cover if {
	denied_with(
		[fx.consent({"categories": ["health.diagnosis", "contact.email"]})],
		["consent_categories_not_covered"],
	)
}

test_consent_categories_only_for_permitted_fields if {
	# trim drops attainment: the consent need not cover education, only what flows
	inp := fx.with_(one_subject([fx.consent({"categories": ["health", "contact.address"]})]), {
		"request": {"fields": ["diagnosis", "postcode", "attainment"]},
		"catalogue": {"attainment": fx.catalogue.attainment},
		"agreement": {"minimisation": {"mode": "trim"}},
	})
	result := decision.result with input as inp
	result.allow == true
	result.obligations.dropped_fields == ["attainment"]
}

test_guardian_consent_missing if {
	denied_with([fx.consent({"subject_is_minor": true, "guardian": false})], ["guardian_consent_missing"])
}

test_minor_with_guardian_consent_allows if {
	result := decide([fx.consent({"subject_is_minor": true, "guardian": true})])
	result.allow == true
}

test_one_valid_consent_among_invalid_ones_allows if {
	result := decide([
		fx.consent({"id": "c-a", "status": "withdrawn"}),
		fx.consent({"id": "c-b"}),
		fx.consent({"id": "c-c", "status": "refused"}),
	])
	result.allow == true
	result.subjects[0] == {"subject": "ps-1", "allow": true, "reasons": []}
}

test_reasons_are_union_sorted_and_deduplicated if {
	denied_with(
		[
			fx.consent({"id": "c-a", "status": "withdrawn", "purposes": ["marketing"]}),
			fx.consent({"id": "c-b", "status": "withdrawn"}),
			fx.consent({"id": "c-c", "valid_from_ns": fx.now + 5, "subject_is_minor": true}),
			fx.consent({"id": "c-d", "categories": []}),
		],
		[
			"consent_categories_not_covered",
			"consent_not_yet_valid",
			"consent_purpose_not_covered",
			"consent_withdrawn",
			"guardian_consent_missing",
		],
	)
}

test_withdrawn_consent_reports_only_withdrawal if {
	# a withdrawn consent that otherwise matched says only why it no longer counts
	denied_with([fx.consent({"status": "withdrawn"})], ["consent_withdrawn"])
}

test_unrecognised_consent_status_fails_closed if {
	denied_with([fx.consent({"status": "pending"})], ["consent_invalid"])
}

test_legal_basis_consent_requires_consent if {
	inp := fx.with_(fx.with_consents({}), {"agreement": {"consent_required": false, "legal_basis": "consent"}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["some_subjects_denied"]
}

test_consent_required_flag_requires_consent if {
	inp := fx.with_(fx.with_consents({}), {"agreement": {"consent_required": true, "legal_basis": "public_task"}})
	result := decision.result with input as inp
	result.allow == false
	fx.subject_codes(result, 0) == ["consent_missing"]
}

test_consent_not_required_ignores_invalid_consents if {
	inp := fx.with_(
		one_subject([fx.consent({"status": "withdrawn"})]),
		{"agreement": {"consent_required": false, "legal_basis": "legitimate_interests"}},
	)
	result := decision.result with input as inp
	result.allow == true
	result.subjects[0].allow == true
}

test_all_subjects_denied if {
	inp := fx.with_consents({})
	result := decision.result with input as inp
	result.allow == false
	result.reasons[0].message == "2 of 2 subjects were denied"
	every subject in result.subjects {
		subject.allow == false
	}
}

test_subject_results_keep_request_order if {
	inp := fx.with_(fx.with_consents({
		"ps-c": [fx.consent({})],
		"ps-a": [fx.consent({"status": "refused"})],
	}), {"request": {"subjects": ["ps-c", "ps-b", "ps-a"]}})
	result := decision.result with input as inp
	[subject.subject | some subject in result.subjects] == ["ps-c", "ps-b", "ps-a"]
	[subject.allow | some subject in result.subjects] == [true, false, false]
	fx.subject_codes(result, 1) == ["consent_missing"]
	fx.subject_codes(result, 2) == ["consent_refused"]
}

test_request_denied_and_consent_reasons_together if {
	inp := fx.with_(
		fx.with_consents({"ps-2": [fx.consent({})]}),
		{"agreement": {"status": "suspended"}},
	)
	result := decision.result with input as inp
	fx.codes(result) == ["agreement_suspended"]
	fx.subject_codes(result, 0) == ["consent_missing", "request_denied"]
	fx.subject_codes(result, 1) == ["request_denied"]
}

# covering_pairs judges each distinct [purposes, categories] pair once: consents of one
# form share it, a form that misses the purpose or a field's category is left out, and a
# consent without one of the two keys has no pair at all.
test_covering_pairs_keeps_the_covering_forms if {
	categories := [{"health", "health.diagnosis"}, {"contact"}]
	covering := decision.covering_pairs(
		true,
		{
			"ps-1": [fx.consent({})],
			"ps-2": [fx.consent({"id": "consent-2"}), fx.consent({"categories": ["health"]})],
			"ps-3": [fx.consent({"purposes": ["marketing"]})],
			"ps-4": [object.remove(fx.consent({}), ["categories"])],
		},
		{"research.public_health", "research"},
		categories,
	)
	covering == {[["research"], ["health", "contact"]]}
	decision.covering_pairs(false, {"ps-1": [fx.consent({})]}, {"research"}, categories) == set()
}

test_consent_without_purposes_denies if {
	denied_with([object.remove(fx.consent({}), ["purposes"])], ["consent_invalid"])
}
