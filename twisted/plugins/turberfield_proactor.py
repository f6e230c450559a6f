"""The ``twistd proactor`` dropin: the tap module is imported only when used."""

from twisted.application.service import ServiceMaker

proactor = ServiceMaker(
    "turberfield proactor",
    "turberfield_twisted.tap",
    "Launch Python modules as HTTP workers and drive them over a JSON control API.",
    "proactor",
)
