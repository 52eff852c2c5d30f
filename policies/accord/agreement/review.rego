# Does an agreement need an ethics review before it can be approved?
#
# Entrypoint: data.accord.agreement.review
#   input:  {"agreement": {...}, "catalogue": {...}, "sensitive_categories": [...]}
#   output: {"required": bool, "sensitive_fields": [sorted field names]}
# Required iff any field named by any purpose of the agreement is sensitive (the shared
# rule in accord.lib; fields absent from the catalogue count as sensitive).
package accord.agreement

import rego.v1

import data.accord.lib

named_fields := {field |
	some entry in input.agreement.purposes
	some field in entry.fields
}

sensitive_fields := lib.sensitive_fields(
	object.get(input, "catalogue", {}),
	object.get(input, "sensitive_categories", []),
	named_fields,
)

# Fail closed: should the input be unusable, say a review is required.
default review := {"required": true, "sensitive_fields": []}

review := {
	"required": count(sensitive_fields) > 0,
	"sensitive_fields": sort(sensitive_fields),
}
