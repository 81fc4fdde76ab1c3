"""The Feature class: a licensed piece of host functionality.

Farside has no licensing, so no host lists features (``host.features`` is empty) and the class has
no objects; it is not persistent because xapi derives features from the licence at start-up.
"""

from farside.model.schema import RO, RT, ClassDef, F

FEATURE = ClassDef(
    "Feature",
    "A new piece of functionality",
    by_name_label=True,
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RO),
        F("name_description", "string", RO),
        F("enabled", "bool", RT),
        F("experimental", "bool", RO),
        F("version", "string", RO, "1.0"),
        F("host", "host ref", RT),
    ],
)
