//go:build tools

// Package tools pins the Python language host's main package. It lives in the sdk/v3 module up to
// v3.79.0 (later releases moved it to a module the Go module proxy does not serve), and it speaks
// the same language-host protocol to newer engines.
package tools

import _ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
