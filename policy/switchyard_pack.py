"""The policy pack: `switchyard_rules.RULES` registered as Pulumi policies.

`build_policies()` turns every rule into a `ResourceValidationPolicy` and/or a
`StackValidationPolicy` without serving anything, so tests can load and inspect the pack;
`serve()` hands them to `PolicyPack`, whose constructor starts the analyzer server the
Pulumi CLI talks to and never returns (that is all `__main__.py` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import switchyard_rules as rules
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME: Final = "switchyard-reliability"
#: Every rule blocks the deployment: these are the guarantees failure case 17
#: (docs/failure-cases.md) makes.
ENFORCEMENT: Final = EnforcementLevel.MANDATORY
DESCRIPTION: Final = ("Switchyard's failure case 17 on AWS and GCP: dead letters and "
                      "explicit retries on every async edge, least privilege, one identity per "
                      "function, encryption at rest, internal ingress, no plaintext secrets.")


def _validate_resource(rule: rules.Rule
                       ) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rules.check_resource(rule, args.resource_type, args.name, args.props,
                                            args.get_config()):
            report_violation(message, None)

    validate.__name__ = f"validate_{rule.name.replace('-', '_')}"
    return validate


def _resource(resource: PolicyResource) -> rules.Resource:
    return rules.Resource(
        type=resource.resource_type, name=resource.name, urn=resource.urn,
        props=resource.props,
        property_dependencies={k: tuple(d.urn for d in deps)
                               for k, deps in resource.property_dependencies.items()})


def _validate_stack(rule: rules.Rule
                    ) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        # The Python SDK unwraps secrets before policies see them: secretness is unknown.
        stack = rules.Stack(tuple(_resource(r) for r in args.resources), secret_outputs=None,
                            unknown=(UnknownValueError,))
        for violation in rules.check_stack(rule, stack, args.get_config()):
            report_violation(violation.message, violation.urn or None)

    validate.__name__ = f"validate_{rule.name.replace('-', '_')}_stack"
    return validate


def _schema(rule: rules.Rule) -> PolicyConfigSchema | None:
    if not rule.config_schema:
        return None
    return PolicyConfigSchema(properties=dict(rule.config_schema))


def build_policies(level: EnforcementLevel = ENFORCEMENT) -> list[Policy]:
    """One Pulumi policy per rule and kind; a rule with both kinds gets a `-stack` twin
    (policy names are unique within a pack)."""
    policies: list[Policy] = []
    for rule in rules.RULES:
        if rule.resource_check is not None:
            policies.append(ResourceValidationPolicy(
                name=rule.name, description=rule.description,
                validate=_validate_resource(rule), enforcement_level=level,
                config_schema=_schema(rule), remediation_steps=rule.remediation))
        if rule.stack_check is not None:
            name = f"{rule.name}-stack" if rule.resource_check is not None else rule.name
            policies.append(StackValidationPolicy(
                name=name, description=rule.description, validate=_validate_stack(rule),
                enforcement_level=level, config_schema=_schema(rule),
                remediation_steps=rule.remediation))
    return policies


def pack_arguments() -> Mapping[str, Any]:
    """What `serve` passes to `PolicyPack` (inspectable without serving)."""
    return {"name": PACK_NAME, "policies": build_policies(), "enforcement_level": ENFORCEMENT,
            "description": DESCRIPTION}


def serve() -> None:
    """Start the analyzer server and block: the Pulumi CLI connects to the port it prints."""
    PolicyPack(**pack_arguments())
