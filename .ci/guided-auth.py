import sys
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.commands.deploy.auth_utils import auth_per_resource
stacks, _ = SamLocalStackProvider.get_stacks("template.yaml", parameter_overrides={"PaymentGateway": "simulated", "Stage": "dev"})
res = auth_per_resource(stacks)
bad = [name for name, ok in res if not ok]
print(f"{len(res)} HTTP routes checked the way `sam deploy --guided` does; without authorization: {bad or 'none'}")
sys.exit(1 if bad else 0)
