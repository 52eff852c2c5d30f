# data.accord.agreement.review: does an agreement need an ethics review?
package accord.agreement_test

import rego.v1

import data.accord.agreement
import data.accord.fixtures as fx

review_input(purposes, catalogue) := {
	"agreement": object.union(fx.agreement, {"status": "draft", "purposes": purposes}),
	"catalogue": catalogue,
	"sensitive_categories": ["health", "minors"],
}

test_review_required_for_sensitive_category if {
	inp := review_input([{"purpose": "research", "fields": ["postcode", "diagnosis"]}], fx.catalogue)
	result := agreement.review with input as inp
	result == {"required": true, "sensitive_fields": ["diagnosis"]}
}

test_review_required_for_sensitive_flag if {
	inp := review_input([{"purpose": "research", "fields": ["ethnicity", "email"]}], fx.catalogue)
	result := agreement.review with input as inp
	result == {"required": true, "sensitive_fields": ["ethnicity"]}
}

test_review_not_required if {
	inp := review_input(
		[
			{"purpose": "research", "fields": ["postcode"]},
			{"purpose": "service_delivery", "fields": ["email", "attainment"]},
		],
		fx.catalogue,
	)
	result := agreement.review with input as inp
	result == {"required": false, "sensitive_fields": []}
}

test_review_fields_absent_from_catalogue_are_sensitive if {
	inp := review_input([{"purpose": "research", "fields": ["postcode", "shoe_size"]}], fx.catalogue)
	result := agreement.review with input as inp
	result == {"required": true, "sensitive_fields": ["shoe_size"]}
}

test_review_sensitive_fields_sorted_and_deduplicated_across_purposes if {
	inp := review_input(
		[
			{"purpose": "research", "fields": ["ethnicity", "diagnosis"]},
			{"purpose": "service_delivery", "fields": ["diagnosis", "email"]},
		],
		fx.catalogue,
	)
	result := agreement.review with input as inp
	result == {"required": true, "sensitive_fields": ["diagnosis", "ethnicity"]}
}

test_review_no_purposes if {
	inp := review_input([], fx.catalogue)
	result := agreement.review with input as inp
	result == {"required": false, "sensitive_fields": []}
}

test_review_defined_for_empty_input if {
	result := agreement.review with input as {}
	result == {"required": false, "sensitive_fields": []}
}

test_review_agrees_with_decision_sensitivity if {
	# the same field set is sensitive for the review and for a decision's ethics rule
	inp := review_input([{"purpose": "research", "fields": ["diagnosis", "postcode", "ethnicity"]}], fx.catalogue)
	review := agreement.review with input as inp
	decision_inp := object.union(fx.subjects_input, {
		"request": {"fields": ["diagnosis", "postcode", "ethnicity"]},
		"catalogue": fx.catalogue,
	})
	sensitive := data.accord.decision.sensitive_permitted with input as decision_inp
	review.sensitive_fields == sort(sensitive)
}
