"""DynamoDB update expressions built from clauses, with generated placeholders.

Conditions and key conditions are ``boto3.dynamodb.conditions`` objects (``Attr``, ``Key``):
boto3 turns them into expressions with its own ``#n``/``:v`` placeholders and merges those into
the ones built here, which use ``#u``/``:u`` so the two never collide.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any


class Update:
    """Collects SET, REMOVE, ADD and DELETE clauses into one ``UpdateExpression``.

    Every attribute name goes through a placeholder, so reserved words (``status``) need no care.
    """

    def __init__(self) -> None:
        self._clauses: dict[str, list[str]] = {"SET": [], "REMOVE": [], "ADD": [], "DELETE": []}
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        # The same clauses as data, to apply them to an item read earlier (applied_to).
        self._operations: list[tuple[str, str, Any]] = []

    def set(self, name: str, value: Any) -> Update:
        self._operations.append(("SET", name, value))
        self._clauses["SET"].append(f"{self._name(name)} = {self._value(value)}")
        return self

    def set_all(self, attributes: dict[str, Any]) -> Update:
        for name, value in attributes.items():
            self.set(name, value)
        return self

    def set_if_absent(self, name: str, value: Any) -> Update:
        """Writes ``value`` only if the item has no such attribute yet."""
        self._operations.append(("SET_IF_ABSENT", name, value))
        placeholder = self._name(name)
        self._clauses["SET"].append(
            f"{placeholder} = if_not_exists({placeholder}, {self._value(value)})"
        )
        return self

    def remove(self, *names: str) -> Update:
        self._operations.extend(("REMOVE", name, None) for name in names)
        self._clauses["REMOVE"].extend(self._name(name) for name in names)
        return self

    def add(self, name: str, value: Any) -> Update:
        """Adds to a number, or adds the members of a set to a set attribute."""
        self._operations.append(("ADD", name, value))
        self._clauses["ADD"].append(f"{self._name(name)} {self._value(value)}")
        return self

    def delete(self, name: str, members: Set[str]) -> Update:
        """Takes ``members`` out of a set attribute."""
        self._operations.append(("DELETE", name, members))
        self._clauses["DELETE"].append(f"{self._name(name)} {self._value(members)}")
        return self

    def arguments(self) -> dict[str, Any]:
        """``UpdateExpression`` and its placeholders, as keyword arguments of ``update_item``."""
        expression = " ".join(
            f"{action} {', '.join(clauses)}" for action, clauses in self._clauses.items() if clauses
        )
        arguments: dict[str, Any] = {"UpdateExpression": expression}
        # Fresh dicts: boto3 merges a condition's placeholders into them in place.
        if self._names:
            arguments["ExpressionAttributeNames"] = dict(self._names)
        if self._values:
            arguments["ExpressionAttributeValues"] = dict(self._values)
        return arguments

    def value_of(self, name: str) -> Any:
        """The value this update SETs ``name`` to, or None."""
        found = None
        for action, attribute, value in self._operations:
            if attribute == name and action == "SET":
                found = value
        return found

    def applied_to(self, item: dict[str, Any]) -> dict[str, Any]:
        """The item as this update leaves it, computed here: a write inside a transaction
        returns no attributes, and reading the item back would cost a call."""
        result = dict(item)
        for action, name, value in self._operations:
            if action == "SET":
                result[name] = value
            elif action == "SET_IF_ABSENT":
                result.setdefault(name, value)
            elif action == "REMOVE":
                result.pop(name, None)
            elif action == "ADD" and isinstance(value, Set):
                result[name] = set(result.get(name, set())) | set(value)
            elif action == "ADD":
                result[name] = result.get(name, 0) + value
            elif action == "DELETE":
                remaining = set(result.get(name, set())) - set(value)
                if remaining:
                    result[name] = remaining
                else:  # DynamoDB drops a set left empty
                    result.pop(name, None)
        return result

    def _name(self, name: str) -> str:
        for placeholder, known in self._names.items():
            if known == name:
                return placeholder
        placeholder = f"#u{len(self._names)}"
        self._names[placeholder] = name
        return placeholder

    def _value(self, value: Any) -> str:
        placeholder = f":u{len(self._values)}"
        self._values[placeholder] = value
        return placeholder
