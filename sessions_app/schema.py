"""A small JSON-Schema subset validator with Ajv-style messages.

The OpenClaw gateway validates params with TypeBox/Ajv and answers
``invalid <method> params: at /mode: must be equal to one of the allowed values``;
clients and tests match on those shapes, so the messages follow Ajv's wording.
Supported keywords: type, properties, required, additionalProperties, enum, const,
minLength, maxLength, minimum, maximum, items, minItems, maxItems, anyOf, nullable.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Return Ajv-style error messages (empty when ``value`` fits ``schema``)."""
    if value is None and schema.get("nullable"):
        return []
    if "anyOf" in schema:
        return _any_of(schema, value, path)
    type_error = _check_type(schema, value, path)
    if type_error:
        return [type_error]
    errors: list[str] = []
    for check in (_check_enum, _check_const, _check_string, _check_number):
        message = check(schema, value)
        if message:
            errors.append(_at(path, message))
    if isinstance(value, dict):
        errors.extend(_check_object(schema, value, path))
    if isinstance(value, list):
        errors.extend(_check_array(schema, value, path))
    return errors


def _at(path: str, message: str) -> str:
    return f"at {path}: {message}" if path else message


def _check_type(schema: dict[str, Any], value: Any, path: str) -> str | None:
    expected = schema.get("type")
    if expected is None:
        return None
    names = expected if isinstance(expected, list) else [expected]
    if any(_TYPES[name](value) for name in names):
        return None
    return _at(path or "/", f"must be {','.join(names)}") if path else f"must be {','.join(names)}"


def _check_enum(schema: dict[str, Any], value: Any) -> str | None:
    if "enum" in schema and value not in schema["enum"]:
        return "must be equal to one of the allowed values"
    return None


def _check_const(schema: dict[str, Any], value: Any) -> str | None:
    if "const" in schema and value != schema["const"]:
        return "must be equal to constant"
    return None


def _check_string(schema: dict[str, Any], value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"must not have fewer than {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must not have more than {schema['maxLength']} characters"
    return None


# JSON numbers a JavaScript client can hold exactly; beyond them (and NaN/Infinity) a
# declared integer/number is refused before it reaches a query or a timer.
MAX_SAFE_INTEGER = 2**53 - 1


def _check_number(schema: dict[str, Any], value: Any) -> str | None:
    if not _TYPES["number"](value):
        return None
    if _declares_number(schema) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return f"must be <= {MAX_SAFE_INTEGER}" if value > 0 else f"must be >= {-MAX_SAFE_INTEGER}"
    if "minimum" in schema and value < schema["minimum"]:
        return f"must be >= {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"must be <= {schema['maximum']}"
    return None


def _declares_number(schema: dict[str, Any]) -> bool:
    names = schema.get("type")
    names = names if isinstance(names, list) else [names]
    return "integer" in names or "number" in names


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
    errors = [
        _at(path, f"must have required property '{name}'") for name in schema.get("required", []) if name not in value
    ]
    properties = schema.get("properties", {})
    if schema.get("additionalProperties", True) is False:
        extra = [name for name in value if name not in properties]
        if extra:
            errors.append(_at(path, "must NOT have additional properties") + f" ({', '.join(extra)})")
    for name, sub in properties.items():
        if name in value:
            errors.extend(validate(sub, value[name], f"{path}/{name}"))
    return errors


def _check_array(schema: dict[str, Any], value: list[Any], path: str) -> list[str]:
    errors: list[str] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(_at(path, f"must not have fewer than {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(_at(path, f"must not have more than {schema['maxItems']} items"))
    if "items" in schema:
        for index, item in enumerate(value):
            errors.extend(validate(schema["items"], item, f"{path}/{index}"))
    return errors


def _any_of(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    collected: list[str] = []
    for option in schema["anyOf"]:
        errors = validate(option, value, path)
        if not errors:
            return []
        collected.extend(errors)
    return collected + [_at(path, "must match a schema in anyOf")]


# Shorthands for method schemas.
def obj(properties: dict[str, Any], *, required: tuple[str, ...] = (), closed: bool = True) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": not closed}


def string(*, min_length: int | None = None, max_length: int | None = None, enum=None, nullable=False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if enum is not None:
        schema["enum"] = list(enum)
    if nullable:
        schema["nullable"] = True
    return schema


def integer(*, minimum: int | None = None, maximum: int | None = None, nullable=False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    if nullable:
        schema["nullable"] = True
    return schema


def boolean(*, nullable=False) -> dict[str, Any]:
    return {"type": "boolean", "nullable": nullable} if nullable else {"type": "boolean"}


def array(items: dict[str, Any] | None = None, *, min_items=None, max_items=None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    if items is not None:
        schema["items"] = items
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


ANY: dict[str, Any] = {}
