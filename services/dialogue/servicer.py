"""DialogueService handlers: proto messages in, domain calls out. The engine is not built yet, so every RPC
answers UNIMPLEMENTED with a message that names the engine it waits for."""

from kmono.dialogue.v1 import dialogue_pb2_grpc

from libs.serving.service import not_built_yet


class DialogueServicer(dialogue_pb2_grpc.DialogueServiceServicer):
    CreateSession = not_built_yet("CreateSession", engine="KuaiMM, generation/dialogue")
    GetSession = not_built_yet("GetSession", engine="KuaiMM, generation/dialogue")
    ListSessions = not_built_yet("ListSessions", engine="KuaiMM, generation/dialogue")
    DeleteSession = not_built_yet("DeleteSession", engine="KuaiMM, generation/dialogue")
    Chat = not_built_yet("Chat", engine="KuaiMM, generation/dialogue")
