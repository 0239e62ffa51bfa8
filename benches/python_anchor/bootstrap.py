"""A minimal Lambda Runtime API loop for function.py, as Lambda's python runtime runs it.

    python bootstrap.py        (AWS_LAMBDA_RUNTIME_API=host:port in the environment)

Imports the function (its init: imports, the database connection), then asks for invocations
for ever on one keep-alive HTTP connection, posting each answer or the handler's exception.
An import that fails is posted to /runtime/init/error.
"""

import http.client
import json
import os
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"


class Context:
    """The parts of Lambda's context object that BatchProcessor reads."""

    def __init__(self, headers):
        self.aws_request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "anchor")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def post(api, path, body):
    api.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    api.getresponse().read()


def error_body(error):
    return json.dumps(
        {"errorMessage": str(error), "errorType": type(error).__name__,
         "stackTrace": traceback.format_tb(error.__traceback__)}
    )


def main():
    api = http.client.HTTPConnection(API)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import function
    except Exception as error:  # the init error path
        post(api, f"{BASE}/init/error", error_body(error))
        raise
    while True:
        api.request("GET", f"{BASE}/invocation/next")
        answer = api.getresponse()
        event = json.loads(answer.read())
        context = Context(answer.headers)
        request = context.aws_request_id
        try:
            result = function.lambda_handler(event, context)
        except Exception as error:
            post(api, f"{BASE}/invocation/{request}/error", error_body(error))
            continue
        post(api, f"{BASE}/invocation/{request}/response", json.dumps(result))


if __name__ == "__main__":
    main()
