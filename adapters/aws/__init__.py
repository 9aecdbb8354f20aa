"""AWS adapters: Lambda entries, DynamoDB/EventBridge/SNS/Step Functions ports, ASL compiler.

Everything here runs inside Lambda (stdlib + boto3 only), except `topology` and `asl`,
which are pure functions of the app description shared by `infra/aws` and the tests.
"""
