#!/bin/sh
# Example Aodh alarms on smartos-telemetry's meters in Gnocchi (Aodh's
# gnocchi evaluators).  Replace the host, zone and project ids with yours;
# the README section "Bill and alarm on your meters" explains each one.
# tests/test_consumer_configs.py parses these lines with aodhclient's own
# `alarm create` parser and checks every metric, resource type, aggregation
# method and granularity against the archive policies in resources.yaml.
#
# An alarm names an aggregation method and a granularity; the metric's
# archive policy must keep both, or Aodh's evaluator gets a 404 from Gnocchi
# and leaves the alarm at "insufficient data" for good
# (aodh/evaluator/gnocchi.py, GnocchiResourceThresholdEvaluator._statistics).
# Our policies: gauges (the percentiles, .max) mean, max, min; counters max,
# rate:max; both at 60 s (7 days) and 3600 s (365 days).
set -eu

# 1. Run-queue p99 of one zone (here a plain cgroup zone; its resource id is
#    <host>:<kind>:<name>, see `smartos-telemetry zones`): alarm when its
#    worst minute (max of the 60 s p99s) is above 10 ms, three minutes in a
#    row.  Values are nanoseconds.
openstack alarm create --name runqueue-p99-web \
  --type gnocchi_resources_threshold \
  --description "run-queue p99 of zone web above 10 ms for 3 minutes" \
  --metric cpu.runqueue.latency.p99 \
  --resource-type smartos_zone --resource-id cn1:cgroup:web \
  --aggregation-method max --granularity 60 --evaluation-periods 3 \
  --comparison-operator gt --threshold 10000000 \
  --alarm-action log:// --ok-action log://

# 2. The same for a Nova instance: its resource is the instance UUID, of
#    ceilometer's type `instance`.
openstack alarm create --name runqueue-p99-vm \
  --type gnocchi_resources_threshold \
  --description "run-queue p99 of instance 6b8f2c53 above 10 ms for 3 minutes" \
  --metric cpu.runqueue.latency.p99 \
  --resource-type instance --resource-id 6b8f2c53-1d2e-4c4f-9a57-0f3e2d1c0b01 \
  --aggregation-method max --granularity 60 --evaluation-periods 3 \
  --comparison-operator gt --threshold 10000000 \
  --alarm-action log://

# 3. Every zone of one project (the owner [smartos] owners_file gives a
#    non-Nova zone): the worst zone's p99 above 10 ms.  Aodh asks each
#    zone's metric for max and aggregates them (max of the maxima).
openstack alarm create --name runqueue-p99-acme \
  --type gnocchi_aggregation_by_resources_threshold \
  --description "the worst run-queue p99 among project acme's zones above 10 ms" \
  --metric cpu.runqueue.latency.p99 --resource-type smartos_zone \
  --query '{"=": {"project_id": "6f0c3b1e9a8d4c2b8e5f7a1d3c9b2e40"}}' \
  --aggregation-method max --granularity 60 --evaluation-periods 2 \
  --comparison-operator gt --threshold 10000000 \
  --alarm-action log://

# 4. Engine drops per host: the tracing engine dropped records (its counts
#    undercount from then on).  telemetry.engine.drops is a counter on the
#    host's `host` resource (resource id: the agent's [DEFAULT] host);
#    rate:max is the largest increase between two polls in each minute, so
#    any drop in a minute fires it.
openstack alarm create --name engine-drops-cn1 \
  --type gnocchi_resources_threshold \
  --description "the tracing engine on cn1 dropped records" \
  --metric telemetry.engine.drops \
  --resource-type host --resource-id cn1 \
  --aggregation-method rate:max --granularity 60 --evaluation-periods 1 \
  --comparison-operator gt --threshold 0 \
  --alarm-action log:// --ok-action log://
