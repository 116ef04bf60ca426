package test

import "testing"

func TestE2ESmoke(t *testing.T) {
	ns := newNamespace(t, nil)
	pod := testPod("smoke", "nginx:1.27")
	pod.Namespace = ns
	if err := e2e.client.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
}
