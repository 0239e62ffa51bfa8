"""The plux plugin LocalStack finds under `localstack.lambda.runtime_executor` as `local`."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class LocalExecutorPlugin(RuntimeExecutorPlugin):
    name = "local"

    def load(self, *args, **kwargs):
        # Imported here, as LocalStack's own plugins do: loading the plugin list stays cheap.
        from login_etl_executor.executor import LocalRuntimeExecutor

        return LocalRuntimeExecutor
