#!/usr/bin/env python3
"""Validates a JSON document (standard input) against a schema of tests/schemas.

Usage: schema_check.py [--strict] SCHEMA.json
--strict: every object schema that declares properties takes no others (additionalProperties
false), so an answer carrying a member the official schema does not declare fails.
Exit 0 when valid; 1 with the errors on standard error; 2 on bad usage."""
import json
import sys

import jsonschema


def strict(schema):
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def main(argv):
    args = argv[1:]
    is_strict = "--strict" in args
    args = [a for a in args if a != "--strict"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0]) as f:
        schema = json.load(f)
    if is_strict:
        strict(schema)
    text = sys.stdin.read()
    try:
        doc = json.loads(text)
    except ValueError as e:
        print("not JSON: %s: %.200s" % (e, text), file=sys.stderr)
        return 1
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors[:10]:
        where = "/".join(str(p) for p in e.path) or "(document)"
        print("%s: %s: %s" % (args[0].rsplit("/", 1)[-1], where, e.message[:300]),
              file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
