"""Test-only stand-in for Slicer's ``slicer.i18n`` (absent from slicer-core): no translation."""


def tr(text):
    return text


def translate(context, text):
    return text
