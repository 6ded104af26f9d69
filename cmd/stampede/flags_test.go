package main

import (
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// flagMeanings is the vocabulary of the flags that more than one
// subcommand could use: each name means one thing in every subcommand that
// has it, and its usage text says so with the given words.
var flagMeanings = map[string]string{
	"api":             "backend",             // run, capacity: fake, local, kind or kubeconfig=PATH
	"api-url":         "API server URL",      // agents, controlplane
	"ca-file":         "CA",                  // agents, controlplane
	"token":           "bearer token",        // agents, controlplane
	"token-file":      "one token",           // controlplane: a file holding one bearer token
	"token-auth-file": "token,user,uid",      // fakeapi, agents: kube-apiserver's static token CSV
	"kvstore":         "etcd client URLs",    // agents, controlplane
	"listen":          "address of the API",  // fakeapi only
	"metrics-listen":  "listen address",      // agents, controlplane, etcd
	"ready-file":      "announcement",        // every server process
	"scenario":        "scenario name or",    // everywhere
	"out":             "output directory",    // run, capacity, report
	"mode":            "crd, ces, kvstore",   // agents, controlplane
	"modes":           "modes",               // run, capacity
	"force":           "existing",            // run
	"grace":           "SIGTERM and SIGKILL", // run
}

// TestFlagsMeanOneThing checks every subcommand's flags against
// flagMeanings, and that the names retired for meaning two things are gone.
func TestFlagsMeanOneThing(t *testing.T) {
	retired := map[string]string{"agent-tokens": "token-auth-file"}
	seen := map[string][]string{}
	for _, cmd := range newRootCmd().Commands() {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if to, ok := retired[f.Name]; ok {
				t.Errorf("%s --%s: retired, use --%s", cmd.Name(), f.Name, to)
			}
			want, ok := flagMeanings[f.Name]
			if !ok {
				return
			}
			seen[f.Name] = append(seen[f.Name], cmd.Name())
			if !strings.Contains(f.Usage, want) {
				t.Errorf("%s --%s: usage %q does not say %q, the flag's one meaning", cmd.Name(), f.Name, f.Usage, want)
			}
		})
	}
	if got := seen["listen"]; len(got) != 1 || got[0] != "fakeapi" {
		t.Errorf("--listen is in %v, want only fakeapi (the others serve metrics on --metrics-listen)", got)
	}
	for _, name := range []string{"api", "api-url", "metrics-listen", "token-auth-file", "kvstore"} {
		if len(seen[name]) < 2 {
			names := seen[name]
			sort.Strings(names)
			t.Errorf("--%s is only in %v, want it shared", name, names)
		}
	}
}
