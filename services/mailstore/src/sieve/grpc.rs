//! The `mailfleet.v1.SieveScripts` handlers: check the credential, call
//! [`crate::sieve::scripts`], map errors to `Status` (through
//! `From<StoreError>`).

use mailfleet_proto::v1 as pb;
use mailfleet_proto::v1::sieve_scripts_server::SieveScripts;
use mailfleet_runtime::grpc::check_bearer;
use tonic::{Request, Response, Status};

use crate::grpc::Tokens;
use crate::sieve::SieveQuota;
use crate::store::Store;

#[derive(Clone)]
pub struct SieveService {
    pub store: Store,
    pub tokens: Tokens,
    pub quota: SieveQuota,
}

impl SieveService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        // ManageSieve acts for its logged-in user with the service token; the
        // CLI acts for any account with the admin token.
        check_bearer(
            req,
            &[self.tokens.service.expose(), self.tokens.admin.expose()],
        )
    }
}

#[tonic::async_trait]
impl SieveScripts for SieveService {
    async fn put_script(
        &self,
        request: Request<pb::PutScriptRequest>,
    ) -> Result<Response<pb::PutScriptResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .sieve_put(&r.account, &r.name, &r.content, &self.quota)
            .await?;
        Ok(Response::new(pb::PutScriptResponse::default()))
    }

    async fn check_script(
        &self,
        request: Request<pb::CheckScriptRequest>,
    ) -> Result<Response<pb::CheckScriptResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.quota.compile(&r.content)?;
        Ok(Response::new(pb::CheckScriptResponse::default()))
    }

    async fn list_scripts(
        &self,
        request: Request<pb::ListScriptsRequest>,
    ) -> Result<Response<pb::ListScriptsResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let rows = self.store.sieve_list(&r.account).await?;
        Ok(Response::new(pb::ListScriptsResponse {
            scripts: rows
                .into_iter()
                .map(|s| pb::SieveScript {
                    name: s.name,
                    active: s.active,
                    content: String::new(),
                })
                .collect(),
        }))
    }

    async fn get_script(
        &self,
        request: Request<pb::GetScriptRequest>,
    ) -> Result<Response<pb::SieveScript>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (row, content) = self.store.sieve_get(&r.account, &r.name).await?;
        Ok(Response::new(pb::SieveScript {
            name: row.name,
            active: row.active,
            content,
        }))
    }

    async fn set_active(
        &self,
        request: Request<pb::SetActiveRequest>,
    ) -> Result<Response<pb::SetActiveResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store.sieve_set_active(&r.account, &r.name).await?;
        Ok(Response::new(pb::SetActiveResponse {}))
    }

    async fn delete_script(
        &self,
        request: Request<pb::DeleteScriptRequest>,
    ) -> Result<Response<pb::DeleteScriptResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store.sieve_delete(&r.account, &r.name).await?;
        Ok(Response::new(pb::DeleteScriptResponse {}))
    }

    async fn rename_script(
        &self,
        request: Request<pb::RenameScriptRequest>,
    ) -> Result<Response<pb::RenameScriptResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store.sieve_rename(&r.account, &r.from, &r.to).await?;
        Ok(Response::new(pb::RenameScriptResponse {}))
    }

    async fn have_space(
        &self,
        request: Request<pb::HaveSpaceRequest>,
    ) -> Result<Response<pb::HaveSpaceResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .sieve_have_space(&r.account, &r.name, r.size, &self.quota)
            .await?;
        Ok(Response::new(pb::HaveSpaceResponse {}))
    }
}
