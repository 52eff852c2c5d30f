# Helpers shared by the decision and agreement-review policies.
#
# One sensitivity rule for the whole bundle: a field is sensitive when its own flag is
# true, when its category or any ancestor category is flagged sensitive, or when it is
# absent from the catalogue (unknown fields fail closed).
package accord.lib

import rego.v1

# The category codes of the catalogue entry for `name`: its own category and every
# ancestor in category_lineage. Empty when the field is absent from the catalogue.
field_categories(catalogue, name) := cats if {
	entry := catalogue[name]
	is_object(entry)
	lineage := {code | some code in object.get(entry, "category_lineage", [])}
	own := {code | code := object.get(entry, "category", null); is_string(code)}
	cats := lineage | own
} else := set()

# `sensitive` is a set of sensitive category codes (see as_set).
sensitive_field(catalogue, _, name) if not is_object(catalogue[name])

sensitive_field(catalogue, _, name) if catalogue[name].sensitive == true

sensitive_field(catalogue, sensitive, name) if {
	some code in field_categories(catalogue, name)
	code in sensitive
}

# The sensitive fields among `names` (an array or set of field names).
sensitive_fields(catalogue, sensitive_categories, names) := {name |
	sensitive := as_set(sensitive_categories)
	some name in names
	sensitive_field(catalogue, sensitive, name)
}

# An array (or set) as a set; anything else as the empty set.
as_set(xs) := {x | some x in xs} if {
	is_array(xs)
} else := xs if {
	is_set(xs)
} else := set()
