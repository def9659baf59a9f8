// Package fidelity drives a running azure-standin with Microsoft's own Go SDK clients
// (armappcontainers/v3, azidentity) and replays the official REST examples against it. It is
// built with `go test -c` into the binary azure-standin-fidelity and run by
// crates/testenv/tests/azure_standin.rs with these environment variables:
//
//	AZURE_STANDIN_ARM_URL    https://127.0.0.1:PORT (ARM, token endpoints, control API)
//	AZURE_STANDIN_TENANT     the tenant ID
//	AZURE_STANDIN_CA_FILE    PEM file of the CA that signed the stand-in's certificate
//	AZURE_STANDIN_INGRESS    127.0.0.1:PORT of the ingress listener
//	AZURE_STANDIN_DOMAIN     the environment's default domain
//	AZURE_STANDIN_EXAMPLES   directory of the official REST examples (*.json)
//
// Without AZURE_STANDIN_ARM_URL the tests skip.
package fidelity
