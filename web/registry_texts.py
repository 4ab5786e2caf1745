"""User-facing text of the patient registry: field labels, error messages by code, script strings.

Marked with N_ so the catalog check finds them (web/translations/*/LC_MESSAGES/registry.po).
"""

from __future__ import annotations

from web.i18n import N_

# Validation codes from care.registry / care.phone and refusals from db.patients → what staff read.
ERRORS: dict[str, str] = {
    "name_required": N_("Enter the patient's full name."),
    "name_too_long": N_("The name is too long (at most 100 characters)."),
    "name_characters": N_("A name has only letters (with or without diacritics), spaces, hyphens and apostrophes."),
    "sex_required": N_("Choose the patient's sex."),
    "birth_date_invalid": N_("This is not a valid date."),
    "birth_in_future": N_("The birth date or year cannot be in the future."),
    "birth_too_early": N_("That would make the patient older than 120. Please check the year."),
    "birth_year_invalid": N_("Enter the birth year with four digits, for example 1958."),
    "birth_year_mismatch": N_("The birth year does not match the birth date."),
    "birth_required": N_("Enter the birth year, or the full birth date if it is known."),
    "phone_empty": N_("Enter a mobile number."),
    "phone_characters": N_("A phone number has only digits (and + at the start)."),
    "phone_country": N_("Only Vietnamese mobile numbers (+84) can be used."),
    "phone_length": N_("A mobile number has 10 digits and starts with 0, for example 0912 345 678."),
    "phone_not_mobile": N_("This is not a mobile number. Mobile numbers start with 03, 05, 07, 08 or 09."),
    "commune_unknown": N_("There is no commune with this code. Choose the commune from the list."),
    "address_too_long": N_("The address is too long (at most 200 characters)."),
    "national_id_format": N_("A citizen ID (CCCD) has 12 digits."),
    "national_id_birth_mismatch": N_("The citizen ID does not match the birth year (its 4th to 6th digits encode the year). Please check both."),
    "insurance_format": N_("A health-insurance number has 10 digits (older cards: 2 letters and 13 digits, for example GD4797931234567)."),
    "key_group_unknown": N_("Unknown key group."),
    "pregnant_male": N_("A patient recorded as male cannot be marked as pregnant."),
    "stale_record": N_("Someone else changed this record while you were editing it. Open it again to see their changes."),
    "merge_same": N_("A record cannot be merged into itself."),
    "already_merged": N_("One of these records has already been merged into another one."),
    "both_in_queue": N_("Both patients are in the queue or in a consultation. Merge them after one of them has finished."),
    "merged_in_queue": N_("The record to merge is in the queue or in a consultation. Merge the other way round, or after the consultation ends."),
    "merge_conflict": N_("Both records have data that can exist only once per patient. Resolve it before merging."),
    "merge_not_found": N_("There is no patient with this number in your facilities."),
}

FIELDS: dict[str, str] = {
    "name": N_("Full name"),
    "sex": N_("Sex"),
    "birth_year": N_("Birth year"),
    "birth_date": N_("Birth date"),
    "phone": N_("Mobile phone"),
    "province": N_("Province or city"),
    "commune_code": N_("Commune or ward"),
    "address_detail": N_("Village, street, house number"),
    "national_id": N_("Citizen ID (CCCD)"),
    "insurance_number": N_("Health-insurance number"),
    "key_groups": N_("Key groups"),
}

# Strings the registry pages' script shows.
REGISTRY_JS: list[str] = [
    N_("Searching…"),
    N_("{count} patients found"),
    N_("No patient matches. Check the spelling, try the phone number, or register a new patient."),
    N_("Could not search. Check your connection."),
    N_("Loading communes…"),
    N_("Choose a commune"),
    N_("No commune matches."),
    N_("Could not load the communes. Check your connection."),
    N_("{age} years"),
]
