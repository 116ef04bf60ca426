package verify

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Identity is one accepted signer of a certificate-based signature: the certificate's OIDC
// issuer and subject (a subject alternative name), each exact or an RE2 regular expression, and
// Fulcio extensions that must match exactly.
type Identity struct {
	Issuer, IssuerRegExp   string
	Subject, SubjectRegExp string
	// Extensions are keyed by the names of ExtensionNames.
	Extensions map[string]string
}

// ExtensionNames are the Fulcio certificate extensions an identity may constrain, by the names
// Fulcio's documentation and sigstore-go use (githubWorkflowRepository, sourceRepositoryURI, …).
func ExtensionNames() []string {
	var names []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[certificate.Extensions]()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "issuer" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// identity is a compiled Identity.
type identity struct {
	issuer, subject     string
	issuerRE, subjectRE *regexp.Regexp
	extensions          map[string]string
}

// compileIdentities compiles identities; an error names the identity and field.
func compileIdentities(ids []Identity) ([]identity, error) {
	known := ExtensionNames()
	out := make([]identity, 0, len(ids))
	for i, id := range ids {
		c := identity{issuer: id.Issuer, subject: id.Subject, extensions: maps.Clone(id.Extensions)}
		var err error
		if id.IssuerRegExp != "" {
			if c.issuerRE, err = regexp.Compile(id.IssuerRegExp); err != nil {
				return nil, fmt.Errorf("keyless[%d].issuerRegExp: %w", i, err)
			}
		}
		if id.SubjectRegExp != "" {
			if c.subjectRE, err = regexp.Compile(id.SubjectRegExp); err != nil {
				return nil, fmt.Errorf("keyless[%d].subjectRegExp: %w", i, err)
			}
		}
		if (id.Issuer == "") == (id.IssuerRegExp == "") {
			return nil, fmt.Errorf("keyless[%d]: set exactly one of issuer or issuerRegExp", i)
		}
		if (id.Subject == "") == (id.SubjectRegExp == "") {
			return nil, fmt.Errorf("keyless[%d]: set exactly one of subject or subjectRegExp", i)
		}
		for _, k := range slices.Sorted(maps.Keys(id.Extensions)) {
			if !slices.Contains(known, k) {
				return nil, fmt.Errorf("keyless[%d].extensions[%s]: not a Fulcio extension; one of %s", i, k, strings.Join(known, ", "))
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// certIdentity is what a certificate says of its signer.
type certIdentity struct {
	issuer     string
	subjects   []string
	extensions map[string]string
}

func (c certIdentity) String() string {
	return fmt.Sprintf("subject %s, issuer %q", strings.Join(quoteAll(c.subjects), ", "), c.issuer)
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) == 0 {
		return []string{"(none)"}
	}
	return q
}

// identityOf reads the signer identity of a certificate: its subject alternative names and its
// Fulcio extensions.
func identityOf(cert *x509.Certificate) (certIdentity, error) {
	ext, err := certificate.ParseExtensions(cert.Extensions)
	if err != nil {
		return certIdentity{}, fmt.Errorf("certificate extensions: %w", err)
	}
	raw, err := json.Marshal(ext)
	if err != nil {
		return certIdentity{}, err
	}
	fields := map[string]string{}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return certIdentity{}, err
	}
	return certIdentity{issuer: ext.Issuer, subjects: cryptoutils.GetSubjectAlternateNames(cert), extensions: fields}, nil
}

// matches reports whether the certificate's identity is this one.
func (id identity) matches(c certIdentity) bool {
	switch {
	case id.issuerRE != nil && !id.issuerRE.MatchString(c.issuer):
		return false
	case id.issuerRE == nil && id.issuer != c.issuer:
		return false
	}
	if !slices.ContainsFunc(c.subjects, func(s string) bool {
		if id.subjectRE != nil {
			return id.subjectRE.MatchString(s)
		}
		return s == id.subject
	}) {
		return false
	}
	for k, want := range id.extensions {
		if c.extensions[k] != want {
			return false
		}
	}
	return true
}

// matchIdentity checks a certificate against the accepted identities (none: any identity).
func matchIdentity(cert *x509.Certificate, ids []identity) error {
	if len(ids) == 0 {
		return nil
	}
	c, err := identityOf(cert)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id.matches(c) {
			return nil
		}
	}
	return fmt.Errorf("certificate identity (%s) matches none of the accepted identities", c)
}
