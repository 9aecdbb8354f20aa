"""The real dev stacks' resources, recorded under Pulumi mocks, in the shape policies see.

`record(stack)` runs the real program with `Pulumi.<stack>.yaml`'s config through
`tests.infra.pulumi_harness.run_program` and returns a `Recording`: each custom resource
as the policy pack would see it at `pulumi up` (inputs for resource policies, outputs for
stack policies), plus the root `pulumi:pulumi:Stack` resource carrying the stack outputs.
Mutations copy a recording, so the cached real ones never change.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tests.infra.aws_fakes import aws_fake
from tests.infra.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policy"
# The pack imports its modules as top-level names, the way the CLI runs `policy/`.
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

import switchyard_rules as rules  # noqa: E402


@dataclass(frozen=True)
class Recording:
    stack: str
    resources: tuple[rules.Resource, ...]  # props = outputs (what stack policies see)
    inputs: Mapping[str, Mapping[str, Any]]  # URN -> inputs (what resource policies see)
    secret_outputs: frozenset[str]

    def violations(self, *, strict_secrets: bool = False) -> list[rules.Violation]:
        """Every rule on every resource. `strict_secrets` runs the secret-output rule as
        the pack must (blind to secretness); otherwise with the recorded secretness."""
        stack = rules.Stack(self.resources,
                            None if strict_secrets else self.secret_outputs)
        return rules.evaluate(self.resources, stack, self.inputs)

    def get(self, type_: str, suffix: str) -> rules.Resource:
        """The resource of this type named `switchyard-<stack>-<suffix>` (fails loudly)."""
        name = f"switchyard-{self.stack}-{suffix}" if suffix else f"switchyard-{self.stack}"
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(found) != 1:
            raise AssertionError(f"{self.stack}: {len(found)} {type_} named {name!r}")
        return found[0]

    def mutate(self, urn: str, change: Callable[[dict[str, Any]], None], *,
               outputs: bool = True, inputs: bool = True) -> Recording:
        """A copy in which `change` was applied to this resource's outputs and inputs."""
        resources = []
        for r in self.resources:
            if r.urn == urn and outputs:
                props = copy.deepcopy(dict(r.props))
                change(props)
                r = replace(r, props=props)
            resources.append(r)
        new_inputs = dict(self.inputs)
        if inputs and urn in new_inputs:
            props = copy.deepcopy(dict(new_inputs[urn]))
            change(props)
            new_inputs[urn] = props
        return replace(self, resources=tuple(resources), inputs=new_inputs)

    def add(self, resource: rules.Resource, inputs: Mapping[str, Any] | None = None
            ) -> Recording:
        return replace(self, resources=(*self.resources, resource),
                       inputs={**self.inputs, resource.urn: dict(inputs or resource.props)})

    def without(self, urn: str) -> Recording:
        return replace(self, resources=tuple(r for r in self.resources if r.urn != urn),
                       inputs={k: v for k, v in self.inputs.items() if k != urn})

    def with_secret_outputs(self, names: frozenset[str]) -> Recording:
        return replace(self, secret_outputs=names)


def stack_config(stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


#: ARNs in each service's real format (the rules read them: log-stream ARNs extend the
#: log group's, DLQ ARNs match the redrive policies, trust policies name real ARNs).
arn_fake = aws_fake


@functools.cache
def record(stack: str) -> Recording:
    rec = run_program(stack_config(stack), stack, fake=arn_fake)
    resources = [rules.Resource(r.type, r.name, r.urn, r.outputs) for r in rec.resources
                 if r.custom]
    root_urn = rec.stack_urn or f"urn:pulumi:{stack}::switchyard::pulumi:pulumi:Stack::" \
                                f"switchyard-{stack}"
    resources.append(rules.Resource(rules.STACK, f"switchyard-{stack}", root_urn,
                                    dict(rec.outputs)))
    inputs = {r.urn: r.inputs for r in rec.resources if r.custom}
    return Recording(stack, tuple(resources), inputs, rec.secret_outputs)
