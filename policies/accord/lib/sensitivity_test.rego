# The shared sensitivity rule of accord.lib.
package accord.lib_test

import rego.v1

import data.accord.fixtures as fx
import data.accord.lib

sensitive := {"health", "minors"}

test_sensitive_by_own_flag if {
	lib.sensitive_field(fx.catalogue, sensitive, "ethnicity")
}

test_sensitive_by_ancestor_category if {
	lib.sensitive_field(fx.catalogue, sensitive, "diagnosis")
}

test_sensitive_by_own_category if {
	lib.sensitive_field(fx.catalogue, {"contact.email"}, "email")
}

test_sensitive_when_absent_from_catalogue if {
	lib.sensitive_field(fx.catalogue, sensitive, "unknown_field")
	lib.sensitive_field({}, set(), "anything")
}

test_not_sensitive if {
	not lib.sensitive_field(fx.catalogue, sensitive, "postcode")
	not lib.sensitive_field(fx.catalogue, set(), "attainment")
}

test_sensitive_fields_of_a_list if {
	lib.sensitive_fields(fx.catalogue, ["health"], ["postcode", "diagnosis", "ethnicity", "nope"]) == {"diagnosis", "ethnicity", "nope"}
}

test_field_categories if {
	lib.field_categories(fx.catalogue, "diagnosis") == {"health.diagnosis", "health"}
	lib.field_categories({"f": {"category": "a.b", "category_lineage": ["a"], "sensitive": false}}, "f") == {"a.b", "a"}
	lib.field_categories(fx.catalogue, "unknown_field") == set()
}

test_as_set if {
	lib.as_set(["a", "b", "a"]) == {"a", "b"}
	lib.as_set({"a"}) == {"a"}
	lib.as_set(null) == set()
	lib.as_set("a") == set()
}
