package service_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/natsauth"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// deploy/nats/nats.conf (docker-compose's NATS) requires credentials:
// Herald's user and the system user bypass the callout, everyone else is
// sent to it. (TestExternalNATSWithCallout runs a server on it; the deploy
// module's tests check docker-compose.yml and deploy/kubernetes.)
func TestDeployNATSConfigRequiresAuth(t *testing.T) {
	seed, _ := natsauth.NewIssuer()
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	t.Setenv("HERALD_NATS_PASSWORD", "p1")
	t.Setenv("HERALD_NATS_SYSTEM_PASSWORD", "p2")
	t.Setenv("HERALD_NATS_CALLOUT_ISSUER", issuer)
	opts, err := server.ProcessConfigFile(repoFile(t, "deploy/nats/nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.NoAuthUser != "" || opts.Authorization != "" || opts.Username != "" {
		t.Fatalf("a way in without credentials: no_auth_user %q, token set %v, single user %q", opts.NoAuthUser, opts.Authorization != "", opts.Username)
	}
	ac := opts.AuthCallout
	if ac == nil || ac.Issuer != issuer || strings.Join(ac.AuthUsers, ",") != "herald,herald-system" {
		t.Fatalf("auth callout %+v, want issuer %s and auth users herald, herald-system", ac, issuer)
	}
	if ac.Account != natsauth.GlobalAccount {
		t.Fatalf("callout account %q: Herald places producers in %s, where its streams are", ac.Account, natsauth.GlobalAccount)
	}
	if len(opts.Users) != 2 || opts.SystemAccount != "SYS" {
		t.Fatalf("%d users, system account %q; want herald and herald-system, SYS", len(opts.Users), opts.SystemAccount)
	}
	for _, u := range opts.Users {
		if u.Permissions != nil {
			t.Errorf("user %s has permissions set: Herald's services need the whole account", u.Username)
		}
	}
}
