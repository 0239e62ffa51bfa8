"""An RDS IAM auth token made by botocore (the AWS SDK for Python), at a fixed time: the
independent generator the function's tokens are compared with byte for byte (tests/it/tls.rs).

usage: rds_auth_token_reference.py HOST PORT USER REGION ACCESS_KEY_ID SECRET_ACCESS_KEY
       SESSION_TOKEN|- EPOCH_SECONDS
Run with the SAM tools' Python (.venv-sam), which has botocore.
"""

import datetime
import sys

import botocore.auth
import botocore.compat
import botocore.session
import botocore.signers

SIGNING_MODULES = [botocore.auth, botocore.signers, botocore.compat]
try:
    import botocore.crt.auth

    SIGNING_MODULES.append(botocore.crt.auth)
except ImportError:
    pass


def main() -> None:
    host, port, user, region, key_id, secret, token, epoch = sys.argv[1:9]
    fixed = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)

    def clock(remove_tzinfo=True):
        return fixed.replace(tzinfo=None) if remove_tzinfo else fixed

    # botocore's signers (its own, and AWS CRT's when installed) read the time through
    # get_current_datetime, imported into each module.
    for module in SIGNING_MODULES:
        module.get_current_datetime = clock
    client = botocore.session.get_session().create_client(
        "rds",
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=None if token == "-" else token,
    )
    print(client.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=region))


if __name__ == "__main__":
    main()
