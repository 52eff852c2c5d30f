# Request-level rules of data.accord.decision.result: the agreement in force, the caller,
# the purpose, minimisation, the cohort and the obligations.
package accord.decision_test

import rego.v1

import data.accord.decision
import data.accord.fixtures as fx

# ---------------------------------------------------------------------------------------
# Allowed paths and the shape of the result
# ---------------------------------------------------------------------------------------

test_allow_subjects_with_valid_consents if {
	result := decision.result with input as fx.subjects_input
	result.allow == true
	result.reasons == []
	result.subjects == [
		{"subject": "ps-1", "allow": true, "reasons": []},
		{"subject": "ps-2", "allow": true, "reasons": []},
	]
}

test_allow_obligations if {
	result := decision.result with input as fx.subjects_input
	result.obligations == {
		"permitted_fields": ["diagnosis", "postcode"],
		"dropped_fields": [],
		"pseudonymise": true,
		"retention_days": 365,
		"min_cohort": 10,
		"ethics_conditions": ["publish aggregate results only", "no linkage with other datasets"],
	}
}

test_allow_aggregate if {
	result := decision.result with input as fx.aggregate_input
	result.allow == true
	result.reasons == []
	result.subjects == []
	result.obligations.permitted_fields == ["postcode"]
}

test_allow_contract_basis_without_consents if {
	inp := fx.with_key(
		fx.with_(fx.subjects_input, {"agreement": {"legal_basis": "contract", "consent_required": false}}),
		"consents", {},
	)
	result := decision.result with input as inp
	result.allow == true
	result.reasons == []
	every subject in result.subjects {
		subject.allow == true
		subject.reasons == []
	}
}

test_pseudonymise_false_when_not_required if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"pseudonymisation_required": false}})
	result := decision.result with input as inp
	result.allow == true
	result.obligations.pseudonymise == false
}

test_result_defined_for_empty_input if {
	result := decision.result with input as {}
	result.allow == false
	"agreement_not_found" in fx.codes(result)
	"purpose_unknown" in fx.codes(result)
	result.subjects == []
}

test_reasons_sorted_by_code if {
	inp := fx.with_(fx.subjects_input, {
		"agreement": {"status": "approved", "valid_until_ns": fx.now},
		"request": {"purpose": "marketing"},
		"purpose_lineage": ["marketing"],
	})
	result := decision.result with input as inp
	fx.codes(result) == ["agreement_expired", "agreement_not_active", "purpose_not_permitted"]
}

test_reason_messages_are_short_text if {
	inp := fx.with_(fx.subjects_input, {"principal": {"organisation": "org-stranger"}})
	result := decision.result with input as inp
	every reason in result.reasons {
		is_string(reason.message)
		count(reason.message) > 0
		count(reason.message) <= 200
	}
}

# ---------------------------------------------------------------------------------------
# The agreement in force
# ---------------------------------------------------------------------------------------

test_agreement_not_found if {
	inp := fx.with_key(fx.subjects_input, "agreement", null)
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["agreement_not_found"]
	result.obligations == {
		"permitted_fields": [],
		"dropped_fields": [],
		"pseudonymise": false,
		"retention_days": null,
		"min_cohort": null,
		"ethics_conditions": [],
	}
	result.subjects == [
		{"subject": "ps-1", "allow": false, "reasons": [{"code": "request_denied", "message": decision.subject_messages.request_denied}]},
		{"subject": "ps-2", "allow": false, "reasons": [{"code": "request_denied", "message": decision.subject_messages.request_denied}]},
	]
}

test_agreement_not_found_aggregate if {
	inp := fx.with_key(fx.aggregate_input, "agreement", null)
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["agreement_not_found"]
	result.subjects == []
}

test_agreement_suspended if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"status": "suspended"}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["agreement_suspended"]
}

test_agreement_not_active_for_every_other_status if {
	every status in ["draft", "pending_approval", "approved", "terminated", "expired", "rejected", "superseded"] {
		inp := fx.with_(fx.subjects_input, {"agreement": {"status": status}})
		result := decision.result with input as inp
		result.allow == false
		fx.codes(result) == ["agreement_not_active"]
	}
}

test_agreement_not_yet_valid if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"valid_from_ns": fx.now + 1}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["agreement_not_yet_valid"]
}

test_agreement_valid_from_is_inclusive if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"valid_from_ns": fx.now}})
	result := decision.result with input as inp
	result.allow == true
}

test_agreement_expired_at_valid_until if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"valid_until_ns": fx.now}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["agreement_expired"]
}

test_agreement_valid_until_one_ns_later_allows if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"valid_until_ns": fx.now + 1}})
	result := decision.result with input as inp
	result.allow == true
}

test_agreement_denied_subjects_carry_request_denied if {
	inp := fx.with_(fx.subjects_input, {"agreement": {"status": "suspended"}})
	result := decision.result with input as inp
	every subject in result.subjects {
		subject.allow == false
		[reason.code | some reason in subject.reasons] == ["request_denied"]
	}
	not "some_subjects_denied" in fx.codes(result)
}

# ---------------------------------------------------------------------------------------
# The caller
# ---------------------------------------------------------------------------------------

test_caller_not_recipient if {
	inp := fx.with_(fx.subjects_input, {"principal": {"organisation": "org-provider"}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["caller_not_recipient"]
	contains(result.reasons[0].message, "org-provider")
}

# A caller that is not a recipient learns nothing of the agreement or its subjects: no
# other reason (here the agreement has expired, the purpose is not permitted and a field is
# dropped under strict minimisation), no obligations, no consent codes (here ps-1 withdrew
# and ps-2 has no consent).
test_caller_not_recipient_learns_nothing_more if {
	inp := fx.with_(fx.with_consents({"ps-1": [fx.consent({"status": "withdrawn"})]}), {
		"principal": {"organisation": "org-provider"},
		"agreement": {"valid_until_ns": fx.now},
		"request": {"fields": ["diagnosis", "postcode", "email"]},
	})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["caller_not_recipient"]
	result.obligations == {
		"permitted_fields": [],
		"dropped_fields": [],
		"pseudonymise": false,
		"retention_days": null,
		"min_cohort": null,
		"ethics_conditions": [],
	}
	[s.subject | some s in result.subjects] == ["ps-1", "ps-2"]
	every s in result.subjects {
		s.allow == false
		[r.code | some r in s.reasons] == ["request_denied"]
	}
}

test_a_recipient_denied_for_the_request_still_learns_its_consents if {
	inp := fx.with_(fx.with_consents({"ps-1": [fx.consent({"status": "withdrawn"})]}), {
		"agreement": {"status": "suspended"},
	})
	result := decision.result with input as inp
	fx.codes(result) == ["agreement_suspended"]
	result.obligations.permitted_fields == ["diagnosis", "postcode"]
	fx.subject_codes(result, 0) == ["consent_withdrawn", "request_denied"]
	fx.subject_codes(result, 1) == ["consent_missing", "request_denied"]
}

test_any_recipient_may_ask if {
	inp := fx.with_(fx.subjects_input, {"principal": {"organisation": "org-other-recipient"}})
	result := decision.result with input as inp
	result.allow == true
}

# ---------------------------------------------------------------------------------------
# The purpose
# ---------------------------------------------------------------------------------------

test_purpose_unknown if {
	inp := fx.with_key(
		fx.with_(fx.subjects_input, {"request": {"purpose": "marketing.profiling"}}),
		"purpose_lineage", [],
	)
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["purpose_unknown"]
	contains(result.reasons[0].message, "marketing.profiling")
}

test_descendant_of_permitted_purpose_is_permitted if {
	inp := fx.with_key(
		fx.with_(fx.subjects_input, {"request": {"purpose": "research.public_health.surveillance"}}),
		"purpose_lineage", ["research.public_health.surveillance", "research.public_health", "research"],
	)
	result := decision.result with input as inp
	result.allow == true
}

test_purpose_not_permitted if {
	inp := fx.with_key(
		fx.with_(fx.subjects_input, {"request": {"purpose": "service_delivery.billing"}}),
		"purpose_lineage", ["service_delivery.billing", "service_delivery"],
	)
	result := decision.result with input as inp
	result.allow == false
	# minimisation is not judged for a purpose that is not permitted
	fx.codes(result) == ["purpose_not_permitted"]
	result.obligations.permitted_fields == []
	result.obligations.dropped_fields == ["diagnosis", "postcode"]
}

test_ancestor_of_permitted_purpose_is_not_permitted if {
	# The agreement permits only research.public_health; asking for all of research fails.
	inp := fx.with_key(
		fx.with_key(
			fx.with_(fx.subjects_input, {"request": {"purpose": "research"}}),
			"purpose_lineage", ["research"],
		),
		"agreement", object.union(fx.agreement, {"purposes": [{"purpose": "research.public_health", "fields": ["diagnosis", "postcode"]}]}),
	)
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["purpose_not_permitted"]
}

# ---------------------------------------------------------------------------------------
# Minimisation
# ---------------------------------------------------------------------------------------

test_strict_fields_not_permitted if {
	inp := fx.with_(fx.subjects_input, {
		"request": {"fields": ["postcode", "attainment", "email"]},
		"catalogue": {"attainment": fx.catalogue.attainment, "email": fx.catalogue.email},
	})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["fields_not_permitted"]
	result.reasons[0].message == "Fields not permitted for this purpose: attainment, email"
	result.obligations.permitted_fields == ["postcode"]
	result.obligations.dropped_fields == ["attainment", "email"]
}

test_trim_drops_fields_and_allows if {
	inp := fx.with_(fx.subjects_input, {
		"request": {"fields": ["postcode", "attainment", "email"]},
		"catalogue": {"attainment": fx.catalogue.attainment, "email": fx.catalogue.email},
		"agreement": {"minimisation": {"mode": "trim"}},
	})
	result := decision.result with input as inp
	result.allow == true
	result.reasons == []
	result.obligations.permitted_fields == ["postcode"]
	result.obligations.dropped_fields == ["attainment", "email"]
}

test_trim_no_permitted_fields if {
	inp := fx.with_(fx.subjects_input, {
		"request": {"fields": ["attainment", "email"]},
		"catalogue": {"attainment": fx.catalogue.attainment, "email": fx.catalogue.email},
		"agreement": {"minimisation": {"mode": "trim"}},
	})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["no_permitted_fields"]
	result.obligations.permitted_fields == []
	result.obligations.dropped_fields == ["attainment", "email"]
}

test_strict_with_nothing_permitted_reports_dropped_fields if {
	inp := fx.with_(fx.subjects_input, {
		"request": {"fields": ["attainment"]},
		"catalogue": {"attainment": fx.catalogue.attainment},
	})
	result := decision.result with input as inp
	fx.codes(result) == ["fields_not_permitted"]
}

test_empty_field_list_is_denied if {
	inp := fx.with_(fx.subjects_input, {"request": {"fields": []}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["no_permitted_fields"]
}

test_fields_of_unrelated_purpose_entry_are_not_permitted if {
	# email is listed only under service_delivery.care_coordination
	inp := fx.with_(fx.subjects_input, {
		"request": {"fields": ["email"]},
		"catalogue": {"email": fx.catalogue.email},
	})
	result := decision.result with input as inp
	fx.codes(result) == ["fields_not_permitted"]
	result.obligations.dropped_fields == ["email"]
}

test_fields_union_over_matching_purpose_entries if {
	inp := fx.with_(
		fx.with_key(fx.subjects_input, "agreement", object.union(fx.agreement, {"purposes": [
			{"purpose": "research", "fields": ["postcode"]},
			{"purpose": "research.public_health", "fields": ["diagnosis"]},
			{"purpose": "research.economics", "fields": ["attainment"]},
		]})),
		{"request": {"fields": ["diagnosis", "postcode", "attainment"]}, "catalogue": {"attainment": fx.catalogue.attainment}},
	)
	result := decision.result with input as inp
	result.obligations.permitted_fields == ["diagnosis", "postcode"]
	result.obligations.dropped_fields == ["attainment"]
	fx.codes(result) == ["fields_not_permitted"]
}

test_obligations_computed_on_deny if {
	inp := fx.with_(fx.subjects_input, {
		"agreement": {"status": "suspended", "minimisation": {"mode": "trim"}},
		"request": {"fields": ["postcode", "email"]},
		"catalogue": {"email": fx.catalogue.email},
	})
	result := decision.result with input as inp
	result.allow == false
	result.obligations.permitted_fields == ["postcode"]
	result.obligations.dropped_fields == ["email"]
	result.obligations.retention_days == 365
	result.obligations.min_cohort == 10
	result.obligations.pseudonymise == true
}

# ---------------------------------------------------------------------------------------
# Cohort (aggregate requests)
# ---------------------------------------------------------------------------------------

test_cohort_below_minimum if {
	inp := fx.with_(fx.aggregate_input, {"request": {"cohort_size": 9}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["cohort_below_minimum"]
	result.reasons[0].message == "Cohort size 9 is below the minimum of 10"
}

test_cohort_equal_to_minimum_allows if {
	inp := fx.with_(fx.aggregate_input, {"request": {"cohort_size": 10}})
	result := decision.result with input as inp
	result.allow == true
}

test_cohort_missing_is_below_minimum if {
	inp := fx.with_(fx.aggregate_input, {"request": {"cohort_size": null}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["cohort_below_minimum"]
}

test_cohort_not_judged_for_subject_requests if {
	inp := fx.with_(fx.subjects_input, {"request": {"cohort_size": 1}})
	result := decision.result with input as inp
	result.allow == true
}

test_aggregate_ignores_consent if {
	# consent_required is true in the fixture agreement, yet there are no consents
	result := decision.result with input as fx.aggregate_input
	result.allow == true
}

# ---------------------------------------------------------------------------------------
# The allowed-request path in `result`'s own body, and `explained`
# ---------------------------------------------------------------------------------------

# Allowed inputs of several shapes: consents, aggregate, another legal basis, trimmed
# fields, no review for fields that are not sensitive.
allowed_inputs := [
	fx.subjects_input,
	fx.aggregate_input,
	fx.with_key(
		fx.with_(fx.subjects_input, {"agreement": {"legal_basis": "contract", "consent_required": false}}),
		"consents", {},
	),
	fx.with_(fx.subjects_input, {
		"agreement": {"minimisation": {"mode": "trim"}},
		"request": {"fields": ["diagnosis", "postcode", "email"]},
	}),
	fx.with_key(fx.aggregate_input, "ethics_review", null),
]

# Requests that pass every request-level rule, with some or all subjects denied for their
# consent: one withdrawn, none recorded, and a mix with a subject requested twice.
consent_denied_inputs := [
	fx.with_consents({"ps-1": [fx.consent({"status": "withdrawn"})], "ps-2": [fx.consent({})]}),
	fx.with_consents({}),
	fx.with_(
		fx.with_consents({"ps-a": [fx.consent({})], "ps-b": [fx.consent({"status": "refused"})]}),
		{"request": {"subjects": ["ps-b", "ps-a", "ps-c", "ps-b"]}},
	),
]

test_allowed_inputs_take_the_allowed_request_path if {
	every inp in allowed_inputs {
		result := decision.result with input as inp with decision.explained as "explained"
		result.allow == true
	}
}

test_consent_denials_take_the_allowed_request_path if {
	every inp in consent_denied_inputs {
		result := decision.result with input as inp with decision.explained as "explained"
		result.allow == false
		fx.codes(result) == ["some_subjects_denied"]
	}
}

test_allowed_request_path_agrees_with_explained if {
	every inp in array.concat(allowed_inputs, consent_denied_inputs) {
		result := decision.result with input as inp
		result == decision.explained with input as inp
	}
}

test_subject_requested_twice_is_counted_twice if {
	result := decision.result with input as consent_denied_inputs[2]
	result.reasons[0].message == "3 of 4 subjects were denied"
	[subject.allow | some subject in result.subjects] == [false, true, false, false]
}

# A request-level denial is left to `explained`.
test_denied_inputs_are_explained if {
	denied := [
		fx.with_(fx.subjects_input, {"agreement": {"status": "suspended"}}),
		fx.with_(fx.subjects_input, {"principal": {"organisation": "org-provider"}}),
		fx.with_(fx.subjects_input, {"request": {"purpose": "marketing"}, "purpose_lineage": ["marketing"]}),
		fx.with_(fx.subjects_input, {"request": {"fields": ["diagnosis", "email"]}}),
		fx.with_(fx.aggregate_input, {"request": {"cohort_size": 3}}),
		fx.with_key(fx.subjects_input, "ethics_review", null),
		{},
	]
	every inp in denied {
		"explained" == decision.result with input as inp with decision.explained as "explained"
	}
}
