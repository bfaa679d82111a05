//go:build tools

// Package tools pins the Pulumi CLI's main package in this module's requirements, so that
// `go build github.com/pulumi/pulumi/pkg/v3/cmd/pulumi` builds the CLI at the pinned version.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
