# data.accord.decision.grouped: several requests that differ only in their subjects,
# decided in one evaluation, each exactly as data.accord.decision.result decides it alone.
package accord.decision_grouped_test

import rego.v1

import data.accord.decision
import data.accord.fixtures as fx

# ps-1 and ps-2 consented, ps-3 withdrew, ps-4 has no consent record.
group_consents := {
	"ps-1": [fx.consent({"id": "consent-1"})],
	"ps-2": [fx.consent({"id": "consent-2"})],
	"ps-3": [fx.consent({"id": "consent-3", "status": "withdrawn"})],
}

group := [["ps-1"], ["ps-3"], ["ps-4"], ["ps-1", "ps-2", "ps-3"], [], ["ps-2", "ps-2"]]

# `doc` asked for `subjects` alone, with only their consents: one request of the group.
alone(doc, subjects) := object.union(
	object.union(doc, {"request": {"subjects": subjects}}),
	{"consents": {s: records | some s, records in doc.consents; s in subjects}},
)

grouped_input(doc) := object.union(doc, {"group": group})

# Each entry of `grouped` is `result` for that entry's subjects alone.
agrees_with_result(doc) if {
	results := decision.grouped with input as grouped_input(doc)
	count(results) == count(group)
	every i, subjects in group {
		single := alone(doc, subjects)
		results[i] == decision.result with input as single
	}
}

test_grouped_decides_each_entry_as_result_does if {
	agrees_with_result(fx.with_consents(group_consents))
}

test_grouped_entries_allow_and_deny_their_own_subjects if {
	results := decision.grouped with input as grouped_input(fx.with_consents(group_consents))
	[r.allow | some r in results] == [true, false, false, false, true, true]
	fx.subject_codes(results[1], 0) == ["consent_withdrawn"]
	fx.subject_codes(results[2], 0) == ["consent_missing"]
	results[3].reasons[0].message == "1 of 3 subjects were denied"
	[s.allow | some s in results[3].subjects] == [true, true, false]
	results[4].subjects == []
}

test_grouped_under_trim_minimisation_agrees_with_result if {
	doc := object.union(fx.with_consents(group_consents), {
		"agreement": {"minimisation": {"mode": "trim"}},
		"request": {"fields": ["diagnosis", "postcode", "shoe_size"]},
	})
	agrees_with_result(doc)
	results := decision.grouped with input as grouped_input(doc)
	results[0].obligations.dropped_fields == ["shoe_size"]
}

test_grouped_without_consent_basis_allows_every_subject if {
	doc := object.union(fx.with_consents(group_consents), {"agreement": {
		"legal_basis": "public_task",
		"consent_required": false,
	}})
	agrees_with_result(doc)
	results := decision.grouped with input as grouped_input(doc)
	every r in results {
		r.allow == true
	}
}

test_grouped_is_undefined_when_the_request_is_denied if {
	doc := object.union(fx.with_consents(group_consents), {"agreement": {"status": "suspended"}})
	not decision.grouped with input as grouped_input(doc)
}

test_grouped_is_undefined_for_a_caller_that_is_no_recipient if {
	doc := object.union(fx.with_consents(group_consents), {"principal": {"organisation": "org-other"}})
	not decision.grouped with input as grouped_input(doc)
}

test_grouped_is_undefined_for_an_aggregate if {
	not decision.grouped with input as object.union(fx.aggregate_input, {"group": [[]]})
}

test_grouped_is_undefined_without_a_group if {
	not decision.grouped with input as fx.with_consents(group_consents)
}
