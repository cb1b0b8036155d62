#!/usr/bin/env python3
"""Prepare a fresh moto S3 server for tests and switch on signature checks.

While moto runs without authentication (its default), this creates an IAM
user allowed s3:* and a role that user may assume, takes temporary
credentials (with a session token) for the role, and creates the buckets
named on the command line. Then it sets moto's INITIAL_NO_AUTH_ACTION_COUNT
to 0 through /moto-api/reset-auth: from then on every request must carry a
valid AWS Signature V4 from a known access key, or moto rejects it with 403
(SignatureDoesNotMatch or InvalidAccessKeyId).

Prints shell assignments: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of the
user, and SESSION_ACCESS_KEY_ID, SESSION_SECRET_ACCESS_KEY and
SESSION_TOKEN of the role.
"""

import json
import sys
import urllib.request

import boto3

POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
})


def client(endpoint, service):
    # moto accepts any key while authentication is off.
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="setup", aws_secret_access_key="setup")


def main():
    endpoint, buckets = sys.argv[1], sys.argv[2:]
    iam = client(endpoint, "iam")
    iam.create_user(UserName="apiary-test")
    iam.put_user_policy(UserName="apiary-test", PolicyName="s3", PolicyDocument=POLICY)
    user_key = iam.create_access_key(UserName="apiary-test")["AccessKey"]

    account = client(endpoint, "sts").get_caller_identity()["Account"]
    trust = json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                       "Principal": {"AWS": f"arn:aws:iam::{account}:root"}}],
    })
    role = iam.create_role(RoleName="apiary-test-role", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName="apiary-test-role", PolicyName="s3", PolicyDocument=POLICY)
    session = client(endpoint, "sts").assume_role(RoleArn=role["Arn"],
                                                  RoleSessionName="apiary-test")["Credentials"]

    s3 = client(endpoint, "s3")
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)

    # A form content type would make moto's Flask app consume the body as form fields.
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        if reply.status != 200:
            sys.exit(f"moto did not switch on authentication: HTTP {reply.status}")

    print(f"AWS_ACCESS_KEY_ID={user_key['AccessKeyId']}")
    print(f"AWS_SECRET_ACCESS_KEY={user_key['SecretAccessKey']}")
    print(f"SESSION_ACCESS_KEY_ID={session['AccessKeyId']}")
    print(f"SESSION_SECRET_ACCESS_KEY={session['SecretAccessKey']}")
    print(f"SESSION_TOKEN={session['SessionToken']}")


if __name__ == "__main__":
    main()
