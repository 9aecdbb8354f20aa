"""Every IAM document a recorded AWS stack would send to AWS, found by what carries it.

moto enforces no IAM, so the documents are checked as data: identity policies (role
inline policies, customer managed policies), trust policies (a role's
`assumeRolePolicy`), and resource policies (SQS queue, SNS topic, S3 bucket, EventBridge
bus, KMS key policies, and the statement Lambda writes for each `aws.lambda_.Permission`).
A sweep of every input fails on a policy document held by any other resource type, so a
new carrier cannot slip past the lint unseen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from infra.synth import leaves
from tests.infra.pulumi_harness import Recorded, RecordedResource

Kind = Literal["identity", "trust", "resource", "key"]

#: Resource type -> (input holding the document, kind of document).
CARRIERS: Final[dict[str, tuple[str, Kind]]] = {
    "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
    "aws:iam/policy:Policy": ("policy", "identity"),
    "aws:iam/userPolicy:UserPolicy": ("policy", "identity"),
    "aws:iam/groupPolicy:GroupPolicy": ("policy", "identity"),
    "aws:iam/role:Role": ("assumeRolePolicy", "trust"),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", "resource"),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", "resource"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "resource"),
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy": ("policy", "resource"),
    "aws:kms/key:Key": ("policy", "key"),
}
LAMBDA_PERMISSION: Final = "aws:lambda/permission:Permission"
ROLE_POLICY_ATTACHMENT: Final = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


@dataclass(frozen=True, slots=True)
class Document:
    kind: Kind
    owner: str  # "<type> '<logical name>'", for messages
    resource: RecordedResource
    text: str  # the JSON as sent

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed

    def statements(self) -> list[dict[str, Any]]:
        found = self.data["Statement"]
        return [found] if isinstance(found, dict) else list(found)


def _label(resource: RecordedResource) -> str:
    return f"{resource.type} '{resource.name}'"


def _function_arn(rec: Recorded, function: str) -> str:
    """The ARN of the stack's function named (or ARN'd) `function`."""
    for fn in rec.of_type("aws:lambda/function:Function"):
        if function in (fn.inputs.get("name"), fn.outputs.get("arn")):
            return str(fn.outputs["arn"])
    raise AssertionError(f"a Lambda permission names function {function!r}, not in the stack")


def permission_document(rec: Recorded, permission: RecordedResource) -> str:
    """The statement AddPermission writes into the function's resource policy: Lambda
    turns `sourceArn` into ArnLike aws:SourceArn and `sourceAccount` into StringEquals
    aws:SourceAccount (what its GetPolicy answers)."""
    inputs = permission.inputs
    principal = str(inputs["principal"])
    statement: dict[str, Any] = {
        "Sid": inputs.get("statementId") or permission.name.replace("-", ""),
        "Effect": "Allow",
        "Principal": {"Service": principal} if principal.endswith(".amazonaws.com")
        else {"AWS": principal},
        "Action": inputs["action"],
        "Resource": _function_arn(rec, str(inputs["function"])),
    }
    condition: dict[str, dict[str, str]] = {}
    if inputs.get("sourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": str(inputs["sourceArn"])}
    if inputs.get("sourceAccount"):
        condition["StringEquals"] = {"AWS:SourceAccount": str(inputs["sourceAccount"])}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def documents(rec: Recorded) -> list[Document]:
    """Every IAM document of the stack (fails on one it does not know how to read)."""
    found: list[Document] = []
    for resource in rec.resources:
        carrier = CARRIERS.get(resource.type)
        if carrier is not None:
            key, kind = carrier
            text = resource.inputs.get(key)
            if text:
                assert isinstance(text, str), f"{_label(resource)}: {key} is not JSON text"
                found.append(Document(kind, _label(resource), resource, text))
        if resource.type == "aws:iam/role:Role":
            for inline in resource.inputs.get("inlinePolicies") or ():
                found.append(Document("identity", f"{_label(resource)} inline "
                                      f"'{inline.get('name')}'", resource, inline["policy"]))
        if resource.type == LAMBDA_PERMISSION:
            found.append(Document("resource", _label(resource), resource,
                                  permission_document(rec, resource)))
    _attachments_are_linted(rec)
    _no_unknown_carrier(rec)
    return found


def _attachments_are_linted(rec: Recorded) -> None:
    """A managed policy attachment is linted through the stack's own `aws.iam.Policy`; one
    naming a policy outside the stack (an AWS managed policy) cannot be checked here."""
    ours = {p.outputs.get("arn") for p in rec.of_type("aws:iam/policy:Policy")}
    for attachment in rec.of_type(ROLE_POLICY_ATTACHMENT):
        arn = attachment.inputs.get("policyArn")
        assert arn in ours, (f"{_label(attachment)} attaches {arn}, whose document is not "
                             "in the stack: grant through the role's own inline policy")
    for role in rec.of_type("aws:iam/role:Role"):
        for arn in role.inputs.get("managedPolicyArns") or ():
            assert arn in ours, f"{_label(role)} attaches {arn}, not a policy of the stack"


def _is_policy(value: Any) -> bool:
    if not isinstance(value, str) or '"Statement"' not in value:
        return False
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "Statement" in parsed


def _no_unknown_carrier(rec: Recorded) -> None:
    for resource in rec.resources:
        known = CARRIERS.get(resource.type, ("", ""))[0]
        for path, value in leaves(resource.inputs):
            if _is_policy(value):
                inline = resource.type == "aws:iam/role:Role" and \
                    path.startswith("inlinePolicies")
                assert path == known or inline, (
                    f"{_label(resource)} holds a policy document at {path!r} that the lint "
                    "does not read: add its type to CARRIERS")


__all__ = ["CARRIERS", "Document", "documents", "permission_document"]
