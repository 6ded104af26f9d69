package fakeapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertDirKeepsTheUsersCA: --cert-dir pointing at a directory with a
// ca.crt used to overwrite it and delete it on exit. Start now refuses,
// and the file is left as it was.
func TestCertDirKeepsTheUsersCA(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	mine := []byte("-----BEGIN CERTIFICATE-----\nthe user's CA\n-----END CERTIFICATE-----\n")
	if err := os.WriteFile(ca, mine, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{CertDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded over an existing ca.crt, want an error")
	}
	if !strings.Contains(err.Error(), ca) {
		t.Errorf("Start = %v, want it to name %s", err, ca)
	}
	if got, err := os.ReadFile(ca); err != nil || string(got) != string(mine) {
		t.Errorf("ca.crt after Start = %q, %v; want the user's file untouched", got, err)
	}
}

// TestCertDirRemovesOnlyItsOwnCA: the certificate fakeapi writes is
// removed on Close, and nothing else in the directory is.
func TestCertDirRemovesOnlyItsOwnCA(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{CertDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.CAFile() != filepath.Join(dir, "ca.crt") {
		t.Errorf("CAFile = %q, want %s/ca.crt", s.CAFile(), dir)
	}
	if _, err := os.Stat(s.CAFile()); err != nil {
		t.Errorf("ca.crt while serving: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); !os.IsNotExist(err) {
		t.Errorf("ca.crt after Close: %v, want it removed", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("other file after Close: %v, want it kept", err)
	}
}
