# Ethics review rules of data.accord.decision.result.
package accord.decision_ethics_test

import rego.v1

import data.accord.decision
import data.accord.fixtures as fx

# The fixture requests diagnosis, sensitive through its category's ancestor "health".

test_ethics_review_missing if {
	inp := fx.with_key(fx.subjects_input, "ethics_review", null)
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["ethics_review_missing"]
	result.reasons[0].message == "An ethics review is required for sensitive fields: diagnosis"
	result.obligations.ethics_conditions == []
}

test_ethics_review_rejected if {
	inp := fx.with_(fx.subjects_input, {"ethics_review": {"outcome": "rejected"}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["ethics_review_rejected"]
	result.obligations.ethics_conditions == []
}

test_ethics_review_not_yet_valid if {
	inp := fx.with_(fx.subjects_input, {"ethics_review": {"valid_from_ns": fx.now + 1}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["ethics_review_not_valid"]
	result.obligations.ethics_conditions == []
}

test_ethics_review_expired_at_valid_until if {
	inp := fx.with_(fx.subjects_input, {"ethics_review": {"valid_until_ns": fx.now}})
	result := decision.result with input as inp
	result.allow == false
	fx.codes(result) == ["ethics_review_not_valid"]
}

test_ethics_review_valid_from_is_inclusive if {
	inp := fx.with_(fx.subjects_input, {"ethics_review": {"valid_from_ns": fx.now}})
	result := decision.result with input as inp
	result.allow == true
}

test_ethics_review_rejected_and_expired if {
	inp := fx.with_(fx.subjects_input, {"ethics_review": {"outcome": "rejected", "valid_until_ns": fx.now - 1}})
	result := decision.result with input as inp
	fx.codes(result) == ["ethics_review_not_valid", "ethics_review_rejected"]
}

test_plain_approval_has_no_conditions if {
	inp := fx.with_key(
		fx.subjects_input, "ethics_review",
		object.union(fx.ethics_review, {"outcome": "approved", "conditions": []}),
	)
	result := decision.result with input as inp
	result.allow == true
	result.obligations.ethics_conditions == []
}

test_ethics_conditions_returned if {
	result := decision.result with input as fx.subjects_input
	result.obligations.ethics_conditions == ["publish aggregate results only", "no linkage with other datasets"]
}

test_ethics_not_required_without_sensitive_fields if {
	inp := fx.with_key(fx.aggregate_input, "ethics_review", null)
	result := decision.result with input as inp
	result.allow == true
	result.obligations.ethics_conditions == []
}

test_rejected_review_irrelevant_without_sensitive_fields if {
	inp := fx.with_(fx.aggregate_input, {"ethics_review": {"outcome": "rejected"}})
	result := decision.result with input as inp
	result.allow == true
	result.obligations.ethics_conditions == []
}

test_conditions_of_review_in_force_returned_even_if_not_required if {
	result := decision.result with input as fx.aggregate_input
	result.allow == true
	result.obligations.ethics_conditions == fx.ethics_review.conditions
}

test_sensitive_by_own_flag_needs_review if {
	inp := fx.with_key(
		fx.with_(fx.aggregate_input, {
			"request": {"fields": ["ethnicity"]},
			"catalogue": {"ethnicity": fx.catalogue.ethnicity},
		}),
		"ethics_review", null,
	)
	result := decision.result with input as inp
	fx.codes(result) == ["ethics_review_missing"]
}

test_sensitive_by_category_itself_needs_review if {
	inp := fx.with_key(
		fx.with_key(fx.aggregate_input, "sensitive_categories", ["contact.address"]),
		"ethics_review", null,
	)
	result := decision.result with input as inp
	fx.codes(result) == ["ethics_review_missing"]
}

test_field_absent_from_catalogue_is_sensitive if {
	inp := fx.with_key(
		fx.with_key(fx.aggregate_input, "catalogue", {}),
		"ethics_review", null,
	)
	result := decision.result with input as inp
	fx.codes(result) == ["ethics_review_missing"]
}

test_dropped_sensitive_field_needs_no_review if {
	# trim drops the sensitive attainment-like field; only permitted fields count
	inp := fx.with_key(
		fx.with_(fx.aggregate_input, {
			"request": {"fields": ["postcode", "attainment"]},
			"catalogue": {"attainment": object.union(fx.catalogue.attainment, {"sensitive": true})},
			"agreement": {"minimisation": {"mode": "trim"}},
		}),
		"ethics_review", null,
	)
	result := decision.result with input as inp
	result.allow == true
	result.obligations.dropped_fields == ["attainment"]
}
