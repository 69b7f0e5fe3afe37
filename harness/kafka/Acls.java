// Creates or deletes ACL bindings on a Kafka cluster through its Admin API,
// for the test harness (the Rust Kafka client has no ACL API). Compiled by
// scripts/install-kafka.sh against the broker's own jars.
//
//   java -cp 'libs/*:classes' Acls add|remove ADMIN_CLIENT_PROPERTIES < bindings
//
// Each line of standard input is one binding that allows, from any host:
//   PRINCIPAL RESOURCE_TYPE RESOURCE_NAME OPERATION
// for example `User:pubsubkafka-producer TOPIC orders WRITE`
// (resource types and operations as Kafka names them; a literal pattern).
// Exits non-zero, naming the binding, when the broker refuses any of them.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public final class Acls {
    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !(args[0].equals("add") || args[0].equals("remove"))) {
            System.err.println("usage: Acls add|remove ADMIN_CLIENT_PROPERTIES < bindings");
            System.exit(2);
        }
        boolean add = args[0].equals("add");
        Properties config = new Properties();
        try (FileInputStream in = new FileInputStream(args[1])) {
            config.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        BufferedReader lines = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = lines.readLine(); line != null; line = lines.readLine()) {
            String trimmed = line.trim();
            if (trimmed.isEmpty()) {
                continue;
            }
            String[] f = trimmed.split("\\s+");
            if (f.length != 4) {
                System.err.println("not PRINCIPAL RESOURCE_TYPE RESOURCE_NAME OPERATION: " + line);
                System.exit(2);
            }
            bindings.add(new AclBinding(
                new ResourcePattern(ResourceType.fromString(f[1]), f[2], PatternType.LITERAL),
                new AccessControlEntry(f[0], "*", AclOperation.fromString(f[3]), AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(config)) {
            Map<?, ? extends KafkaFuture<?>> results;
            if (add) {
                results = admin.createAcls(bindings).values();
            } else {
                List<AclBindingFilter> filters = new ArrayList<>();
                for (AclBinding binding : bindings) {
                    filters.add(binding.toFilter());
                }
                results = admin.deleteAcls(filters).values();
            }
            int failed = 0;
            for (Map.Entry<?, ? extends KafkaFuture<?>> entry : results.entrySet()) {
                try {
                    entry.getValue().get(60, TimeUnit.SECONDS);
                } catch (Exception e) {
                    failed++;
                    System.err.println("refused: " + entry.getKey() + ": " + e.getMessage());
                }
            }
            if (failed > 0) {
                System.exit(1);
            }
            System.out.println((add ? "created " : "deleted ") + bindings.size() + " ACL bindings");
        }
    }
}
