#!/usr/bin/env python3
"""Expands template.yaml (AWS SAM) into the plain CloudFormation that `sam deploy` would create,
offline, so that cfn-lint can check the generated resources too: the AWS::Lambda::Function and
the AWS::Lambda::EventSourceMapping exist only after the transform, and cfn-lint run on the SAM
template itself does not see inside them.

    sam_to_cfn.py template.yaml out.json

Runs in the venv that has aws-sam-translator (it comes with aws-sam-cli and cfn-lint). Makes no
AWS call: managed-policy names are not looked up (template.yaml uses none), and a local CodeUri (or a layer's
ContentUri) is replaced by an S3 location, as `sam package` would do after uploading the code.
"""

import json
import os
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# Placeholders for the values CloudFormation fills in at deploy time.
PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


class OfflinePolicyLoader:
    """Stands in for the IAM lookup of AWS managed-policy ARNs."""

    def load(self):
        return {}


# Where each packaged resource type keeps its local code.
CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def with_packaged_code(template: dict) -> dict:
    for name, resource in template.get("Resources", {}).items():
        code_property = CODE_PROPERTIES.get(resource.get("Type"))
        if code_property is None:
            continue
        properties = resource.setdefault("Properties", {})
        code = properties.get(code_property, ".")
        if not (isinstance(code, str) and code.startswith("s3://")):
            properties[code_property] = f"s3://sam-artifacts-bucket/{name}.zip"
    return template


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, destination = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        template = with_packaged_code(yaml_parse(f.read()))
    # The translator asks boto3 for a region even when AWS::Region is given; no call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO_PARAMETERS["AWS::Region"])
    try:
        expanded = transform(template, PSEUDO_PARAMETERS, OfflinePolicyLoader())
    except InvalidDocumentException as error:
        causes = "\n  ".join(str(cause) for cause in error.causes)
        sys.exit(f"{source} is not a valid SAM template:\n  {causes}")
    with open(destination, "w", encoding="utf-8") as f:
        json.dump(expanded, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
