"""template.yaml read the way CloudFormation would: intrinsics resolved against local resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Turns short-form tags (``!Ref X``) into their long form (``{"Ref": "X"}``)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)  # type: ignore[no-untyped-call]


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(document, dict)
    return document


NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the property is dropped


@dataclass
class Resolver:
    """Resolves Ref, GetAtt, Sub, Join and If against parameters and local physical resources."""

    template: dict[str, Any]
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=lambda: _local_pseudo_parameters())

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self._ref(argument)
            if name == "Fn::GetAtt":
                logical, attribute = argument
                return self.attributes[(logical, attribute)]
            if name == "Fn::Sub":
                return self._sub(argument)
            if name == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if name == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if name == "Fn::Join":
                separator, items = argument
                return separator.join(str(self.resolve(i)) for i in items)
            if name == "Fn::If":
                condition, when_true, when_false = argument
                chosen = when_true if self.condition(condition) else when_false
                return self.resolve(chosen)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.template.get("Conditions", {})[name]))

    def _evaluate(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((name, argument),) = expression.items()
            if name == "Fn::Equals":
                left, right = (self._evaluate(a) for a in argument)
                return str(left) == str(right)
            if name == "Fn::Not":
                return not self._evaluate(argument[0])
            if name == "Fn::And":
                return all(self._evaluate(a) for a in argument)
            if name == "Fn::Or":
                return any(self._evaluate(a) for a in argument)
            if name == "Condition":
                return self.condition(argument)
        return self.resolve(expression)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        return self.refs[name]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        resolved_vars = {k: str(self.resolve(v)) for k, v in variables.items()}
        out = []
        rest = text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name in resolved_vars:
                out.append(resolved_vars[name])
            elif "." in name:
                logical, attribute = name.split(".", 1)
                out.append(self.attributes[(logical, attribute)])
            else:
                out.append(str(self._ref(name)))
        out.append(rest)
        return "".join(out)


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {
        name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
    }


def is_created(resolver: Resolver, resource: dict[str, Any]) -> bool:
    """False for a resource whose Condition is false (it does not exist in this stack)."""
    condition = resource.get("Condition")
    return condition is None or resolver.condition(condition)


def _local_pseudo_parameters() -> dict[str, str]:
    # Imported here: local.aws reads the template through this module.
    from local.aws import ACCOUNT_ID, REGION, STACK_NAME

    return {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::StackName": STACK_NAME,
        "AWS::URLSuffix": "amazonaws.com",
    }
