# Helpers shared by the decision and agreement-review policies.
#
# One sensitivity rule for the whole bundle: a field is sensitive when its own flag is
# true, when its category or any ancestor category is flagged sensitive, or when it is
# absent from the catalogue (unknown fields fail closed). It is written once, in bulk
# (sensitive_fields: a few comprehensions over all the names, no call per name, which is
# what an evaluation can afford); sensitive_field is its one-name form.
package accord.lib

import rego.v1

# The category codes of the catalogue entry for `name`: its own category and every
# ancestor in category_lineage. Empty when the field is absent from the catalogue.
field_categories(catalogue, name) := categories_of(catalogue, [name])[0]

# The category codes of each of `names` (an array or set), as field_categories, in one
# call: [field_categories(catalogue, name) | some name in names].
categories_of(catalogue, names) := [categories |
	some name in names
	categories := {code | some code in catalogue[name].category_lineage} | {code |
		code := catalogue[name].category
		is_string(code)
	}
]

# The sensitive fields among `names` (an array or set of field names);
# `sensitive_categories` is an array or set of category codes.
sensitive_fields(catalogue, sensitive_categories, names) := (unknown | flagged) | (by_lineage | by_category) if {
	sensitive := as_set(sensitive_categories)
	unknown := {name | some name in names; not catalogue[name]} | {name |
		some name in names
		entry := catalogue[name]
		not is_object(entry)
	}
	flagged := {name | some name in names; catalogue[name].sensitive == true}
	by_lineage := {name |
		some name in names
		is_object(catalogue[name])
		some code in catalogue[name].category_lineage
		sensitive[code]
	}
	by_category := {name |
		some name in names
		is_object(catalogue[name])
		code := catalogue[name].category
		is_string(code)
		sensitive[code]
	}
}

# Is the one field `name` sensitive? `sensitive` is a set of sensitive category codes.
sensitive_field(catalogue, sensitive, name) if name in sensitive_fields(catalogue, sensitive, [name])

# An array (or set) as a set; anything else as the empty set.
as_set(xs) := {x | some x in xs} if {
	is_array(xs)
} else := xs if {
	is_set(xs)
} else := set()
