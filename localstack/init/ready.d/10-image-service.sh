#!/usr/bin/env bash
# LocalStack ready.d hook: creates the bucket (private, CORS, lifecycle), the table (indexes,
# TTL), the queue and its dead-letter queue, and the bucket's upload notifications, by running
# the very code of `image-service init`. Idempotent: LocalStack may run it on every start.
#
# Settings are the service's own IMAGE_SERVICE_* variables (compose gives this container the
# same ones as the API). Inside LocalStack the AWS endpoint is LocalStack itself.
set -euo pipefail

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
# botocore reads AWS_DEFAULT_REGION (AWS_REGION is what other SDKs read).
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"

# The image built by localstack/Dockerfile has it here; tests point this at their own install.
IMAGE_SERVICE_CLI="${IMAGE_SERVICE_CLI:-/opt/image-service/bin/image-service}"

echo "image-service init against ${AWS_ENDPOINT_URL}"
exec "${IMAGE_SERVICE_CLI}" init
