#!/bin/bash
# LocalStack init hook (mounted into /etc/localstack/init/ready.d): creates the queues of
# deploy/compose/bridge.toml once SQS is up. create-queue is idempotent for an existing
# queue with the same attributes.
set -euo pipefail

for queue in smart-network-readings.fifo customer-a.fifo; do
    awslocal sqs create-queue --queue-name "$queue" --attributes FifoQueue=true >/dev/null
    echo "kafka-sqs-bridge: queue $queue is ready"
done
