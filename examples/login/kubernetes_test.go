package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sessionmesh/sessionmesh/cluster"
)

// manifest is the part of a Kubernetes object the test reads.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name     string `yaml:"name"`
			Port     int    `yaml:"port"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
		Template struct {
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
}

// TestKubernetesManifest checks docs/kubernetes/login.yaml against this
// program: its flags exist, the discovery name matches the headless
// Service, the secret comes from a Secret, readiness uses /healthz.
func TestKubernetesManifest(t *testing.T) {
	raw, err := os.ReadFile("../../docs/kubernetes/login.yaml")
	require.NoError(t, err)
	objs := map[string]manifest{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if m.Kind != "" {
			objs[m.Kind+"/"+m.Metadata.Name] = m
		}
	}
	require.Contains(t, objs, "Deployment/login")
	require.Contains(t, objs, "Service/login-mesh")
	require.Contains(t, objs, "Service/login")
	require.Contains(t, objs, "PodDisruptionBudget/login")

	mesh := objs["Service/login-mesh"]
	assert.Equal(t, "None", mesh.Spec.ClusterIP, "headless")
	assert.True(t, mesh.Spec.PublishNotReadyAddresses, "pods find each other before they are ready")

	cs := objs["Deployment/login"].Spec.Template.Spec.Containers
	require.Len(t, cs, 1)
	c := cs[0]

	// Every flag exists in main.go.
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`flag\.\w+Var\(&o\.\w+, "([a-z-]+)"`).FindAllSubmatch(src, -1) {
		defined[string(m[1])] = true
	}
	require.Contains(t, defined, "seeds-dns")
	args := map[string]string{}
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		assert.True(t, defined[name], "flag -%s is not defined by examples/login", name)
		args[name] = value
	}

	// Discovery reads the SRV records of the headless Service's gossip port.
	seeds := strings.ReplaceAll(args["seeds-dns"], "$(POD_NAMESPACE)", "default")
	_, err = cluster.DNSSeeds(nil, seeds)
	require.NoError(t, err)
	var gossipPort int
	for _, p := range mesh.Spec.Ports {
		if p.Name == "gossip" && p.Protocol == "TCP" {
			gossipPort = p.Port
		}
	}
	require.NotZero(t, gossipPort, "the headless Service has a TCP port named gossip")
	assert.Equal(t, "_gossip._tcp.login-mesh.default.svc.cluster.local", seeds)
	assert.Equal(t, "$(POD_IP):7946", args["gossip"])
	assert.Equal(t, 7946, gossipPort)

	// The downward API provides what the args use; the secret comes from a
	// Secret, in the environment.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	assert.Equal(t, "status.podIP", env["POD_IP"])
	assert.Equal(t, "metadata.name", env["POD_NAME"])
	assert.Equal(t, "metadata.namespace", env["POD_NAMESPACE"])
	assert.Equal(t, "secret:login-cluster-secret/secret", env[secretEnv])
	assert.NotContains(t, args, "secret", "the secret never goes in a flag")

	// Readiness on /healthz of the HTTP port the server listens on.
	assert.Equal(t, "/healthz", c.ReadinessProbe.HTTPGet.Path)
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name+"/"+p.Protocol] = p.ContainerPort
	}
	assert.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port)
	assert.Equal(t, "0.0.0.0:8080", args["http"])
	assert.Equal(t, 8080, ports["http/TCP"])
	assert.Equal(t, 7946, ports["gossip/TCP"])
	assert.Equal(t, 7946, ports["gossip-udp/UDP"])
	assert.Equal(t, "$(POD_IP):7947", args["repl"])
	assert.Equal(t, 7947, ports["repl/TCP"])
}
