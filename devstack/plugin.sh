#!/usr/bin/env bash
# smartos-telemetry devstack plugin: installs the package on a compute node,
# writes the [smartos] options and our polling and pipeline entries into
# ceilometer's files, and creates our Gnocchi archive policies and resource
# types (smartos-telemetry upgrade) once Gnocchi runs.
# shellcheck source-path=SCRIPTDIR source=lib/smartos-telemetry
source "$(dirname "${BASH_SOURCE[0]}")/lib/smartos-telemetry"

if is_service_enabled smartos-telemetry; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing smartos-telemetry"
        install_smartos_telemetry
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring smartos-telemetry"
        configure_smartos_telemetry
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Creating smartos-telemetry's Gnocchi resource types"
        upgrade_smartos_telemetry
    fi
    if [[ "$1" == "unstack" || "$1" == "clean" ]]; then
        : # nothing of ours runs: the meters are polled by ceilometer's agent
    fi
fi
