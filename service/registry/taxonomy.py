"""The default purpose and data-category taxonomy shipped with Accord."""

from __future__ import annotations

PURPOSES: list[tuple[str, str]] = [
    ("research", "Research"),
    ("research.public_health", "Public health research"),
    ("research.education", "Education research"),
    ("research.social", "Social research"),
    ("service_delivery", "Service delivery"),
    ("service_delivery.care_coordination", "Care coordination"),
    ("service_delivery.education_support", "Education support"),
    ("service_delivery.benefits", "Benefits administration"),
    ("statistics", "Statistics"),
    ("statistics.official", "Official statistics"),
    ("safeguarding", "Safeguarding"),
    ("safeguarding.child_protection", "Child protection"),
    ("audit_and_compliance", "Audit and compliance"),
]

# (code, label, sensitive)
CATEGORIES: list[tuple[str, str, bool]] = [
    ("contact", "Contact details", False),
    ("contact.email", "Email address", False),
    ("contact.phone", "Telephone number", False),
    ("contact.address", "Postal address", False),
    ("identity", "Identity", False),
    ("identity.name", "Name", False),
    ("identity.date_of_birth", "Date of birth", False),
    ("health", "Health (special category)", True),
    ("health.diagnosis", "Diagnoses", True),
    ("health.medication", "Medication", True),
    ("health.appointments", "Appointments", True),
    ("education", "Education", False),
    ("education.attainment", "Attainment", False),
    ("education.attendance", "Attendance", False),
    ("education.special_needs", "Special educational needs", True),
    ("minors", "Data about minors", True),
    ("minors.age_band", "Age band of a child", True),
    ("socioeconomic", "Socio-economic", False),
    ("socioeconomic.income", "Income", False),
    ("socioeconomic.benefits", "Benefits", False),
]

# (name, category, label)
FIELDS: list[tuple[str, str, str]] = [
    ("email", "contact.email", "Email address"),
    ("phone", "contact.phone", "Telephone number"),
    ("postcode", "contact.address", "Postcode"),
    ("full_name", "identity.name", "Full name"),
    ("date_of_birth", "identity.date_of_birth", "Date of birth"),
    ("diagnosis_code", "health.diagnosis", "Diagnosis code (ICD-10)"),
    ("medication_list", "health.medication", "Current medication"),
    ("appointment_dates", "health.appointments", "Appointment dates"),
    ("exam_results", "education.attainment", "Exam results"),
    ("attendance_rate", "education.attendance", "Attendance rate"),
    ("sen_status", "education.special_needs", "Special educational needs status"),
    ("child_age_band", "minors.age_band", "Age band"),
    ("household_income_band", "socioeconomic.income", "Household income band"),
    ("benefits_status", "socioeconomic.benefits", "Benefits status"),
]


def parent_of(code: str) -> str | None:
    head, _, _ = code.rpartition(".")
    return head or None


def lineage(code: str) -> list[str]:
    """The code and its ancestors, most specific first: a.b.c -> [a.b.c, a.b, a]."""
    parts = code.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
