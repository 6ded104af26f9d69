// Command stampede reproduces and measures how Kubernetes network control
// planes behave under churn. See README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	ctx, stop := signalContext()
	err := newRootCmd().ExecuteContext(ctx)
	code := exitCode(ctx, err)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stampede:", err)
		os.Exit(code)
	}
}
